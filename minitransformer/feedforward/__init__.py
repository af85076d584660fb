"""Stage 5, feed-forward & output (concept: processing).

- `mlp`: the position-wise MLP (GELU as in GPT-2, or SwiGLU);
- `none`: no MLP at all (``ffn="none"``), for attention-only models;
- `moe`, `moe_router`: a mixture of experts with DeepSeek-V3's routing (``ffn="moe"``);
- `output`: the output head, then logits -> probabilities -> the next token.
"""

from .output import probabilities, sample

__all__ = ["probabilities", "sample"]
