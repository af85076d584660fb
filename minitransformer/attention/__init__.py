"""Stage 4, attention (concept: retrieval): queries match keys and retrieve values.

- `mha`: multi-head attention, with grouped- and multi-query attention as the
  cases ``n_kv_heads < n_heads``;
- `mla`: DeepSeek's Multi-Head Latent Attention, which caches a small latent;
- `mha_reference`, `mla_reference`: the same two as their equations, one line
  each (no fused matrices, no in-place softmax, backward as formulas), tested
  equal to the fast paths; run them with ``ModelConfig(attention_impl="reference")``
  or fetch one with ``core.registry.reference_for("attention", "mha")``;
- `kv_cache`: the caches each of them keeps for decoding;
- `mla_accounting`: cache and parameter sizes of published MLA models.
"""
