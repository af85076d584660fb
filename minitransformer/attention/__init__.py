"""Stage 4, attention (concept: retrieval): queries match keys and retrieve values.

- `mha`: multi-head attention, with grouped- and multi-query attention as the
  cases ``n_kv_heads < n_heads``;
- `mla`: DeepSeek's Multi-Head Latent Attention, which caches a small latent;
- `kv_cache`: the caches each of them keeps for decoding;
- `mla_accounting`: cache and parameter sizes of published MLA models.
"""
