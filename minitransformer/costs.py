"""What a model costs: its parameters, and its FLOPs per token.

Both come from one source each. Parameters are counted off the arrays the
model's own `init_params` builds, never from a formula kept beside it; FLOPs
are added up from what each layer's variants report to the registry
(``flops_per_token``), MLA and mixtures of experts included.

    >>> from minitransformer.core.config import ModelConfig
    >>> count_params(ModelConfig.preset("toy")) == __import__("minitransformer").GPT("toy").num_params
    True
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .core.config import ModelConfig
from .core.tree import flatten
from .model import init_params, layer_ffn, stage


def count_params(config: ModelConfig) -> int:
    """Parameters of a model with ``config``, read off the arrays `init_params` builds (one source of truth)."""
    return sum(a.size for a in flatten(init_params(config, np.random.default_rng(0))).values())


def estimate_flops_per_token(config: ModelConfig, seq_len: Optional[int] = None) -> int:
    """Forward FLOPs per token (2 per multiply-add), each stage's share reported by its own variant.

    Every layer's attention and feed-forward variant says what it costs (``flops_per_token`` in the
    registry; attention over a causal sequence of ``seq_len``, default the context length), and the
    output head adds C·V. Training (forward + backward) costs about three times this.
    """
    T = seq_len or config.context_length
    total = 2 * config.d_model * config.vocab_size  # the output head
    attention = stage("attention", config)
    for i in range(config.n_layers):  # a MoE model's first blocks may use a dense MLP
        ffn, layer_config = layer_ffn(config, i)
        for variant, cfg in ((attention, config), (ffn, layer_config)):
            cost = variant.extras.get("flops_per_token")
            if cost is None:
                raise ValueError(f"the {variant.kind} variant {variant.name!r} does not report its cost; "
                                 f"register it with flops_per_token=... to estimate FLOPs")
            total += int(cost(cfg, T))
    return int(total)
