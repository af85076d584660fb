"""Every figure of the project, in one place.

Each function takes data the pipeline has already computed and returns a
`matplotlib.figure.Figure`, built without `pyplot`, so no global figure list
grows and a notebook shows a figure exactly once.

- `tokens`: stage 1 (merge trees, compression, merge counts);
- `stages`: the pipeline's stages (token boundaries, embedding map, positions,
  attention patterns, MLP histograms, sampling, the logit lens, the diagram);
- `training`: loss curves;
- `mla`: Multi-Head Latent Attention (cache sizes, decode time);
- `moe`: the mixture of experts (load balance, routing map, dense vs MoE, its traffic);
- `scaleout`: the network simulator;
- `lab`: the interpretability lab (patching maps, attributions, induction heads forming),
  used as ``figures.lab.layer_head_map(...)``.
"""

from . import lab
from .stages import (attention_patterns, embedding_map, kv_cache_size, logit_lens, mlp_histograms,
                     next_token_bars, pipeline_diagram, positional_heatmap, rope_rotations, sampling_effects,
                     similarity_vs_distance, token_boundaries)
from .tokens import compression_curve, merge_counts, merge_tree
from .training import loss_curves

__all__ = ["attention_patterns", "lab", "compression_curve", "embedding_map", "kv_cache_size", "logit_lens",
           "loss_curves", "merge_counts", "merge_tree", "mlp_histograms", "next_token_bars", "pipeline_diagram",
           "positional_heatmap", "rope_rotations", "sampling_effects", "similarity_vs_distance",
           "token_boundaries"]
