"""Generation: the output stage run in a loop, one new token per step.

    prompt ids (B, T)
      -> prefill: one forward over the whole prompt, which fills the KV cache
      -> repeat: sample the next token from the last position's logits,
                 run a forward on that one token (it reads every earlier key and value from the cache)

With the KV cache a new token costs one position of work, O(T); without it
(``use_cache=False``) every step recomputes the whole sequence, O(T²). Both give
the same tokens (tested).
"""

from __future__ import annotations

import contextlib
from typing import Optional, Union

import numpy as np

from . import embedding
from .core import cores, nn
from .core.values import is_int
from .feedforward import output


def generate(model, prompt_ids, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
             top_p: Optional[float] = None, seed: Union[int, np.random.Generator, None] = 0,
             use_cache: bool = True, crop: bool = False) -> np.ndarray:
    """Continue ``prompt_ids`` (B, T) by ``max_new_tokens`` tokens with ``model`` (a `GPT`); (B, T + max_new_tokens).

    Args:
        temperature, top_k, top_p: how each token is drawn (`output.sample`); temperature 0 is greedy.
        seed: an int or a numpy Generator for the draws.
        use_cache: prefill a KV cache and decode one position per step (default), or recompute.
        crop: allow prompts and continuations longer than the context window by keeping
            only its last ``context_length`` tokens (recomputed, without a cache, once
            the window is full). Without it, such input is an error.
    """
    ids = np.asarray(prompt_ids)
    if ids.size == 0:
        raise ValueError(f"the prompt is empty (shape {ids.shape}): give at least one token (e.g. the "
                         "<|endoftext|> id)")
    ids = embedding.check_ids(ids, model.config.vocab_size)
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative int, got {max_new_tokens!r}")
    max_new_tokens = int(max_new_tokens)
    if not (seed is None or isinstance(seed, np.random.Generator) or (is_int(seed) and seed >= 0)):
        raise ValueError(f"seed must be a non-negative int, a numpy Generator or None, got {seed!r}")
    L = model.config.context_length
    if not crop and ids.shape[1] + max_new_tokens > L:
        raise ValueError(f"prompt ({ids.shape[1]} tokens) + max_new_tokens ({max_new_tokens}) exceeds the context "
                         f"window ({L}); shorten them, or pass crop=True to slide the window")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = ids.shape[1]  # tokens so far
    out = np.empty((ids.shape[0], n + max_new_tokens), np.result_type(ids.dtype, np.int64))  # (B, T + new)
    out[:, :n] = ids
    kv = model.new_kv_cache(batch_size=ids.shape[0]) if use_cache else None
    # note: one sequence decoded with a cache multiplies single rows by the weights; a second BLAS
    # thread does not speed that up, and while idle it would spin on the other core
    one_row = kv is not None and ids.shape[0] == 1
    with nn.no_grad():
        logits = model.forward(ids[:, -L:], kv_cache=kv)  # prefill
        with cores.blas_threads(1) if one_row else contextlib.nullcontext():
            _decode(model, out, n, logits, kv, max_new_tokens, rng, temperature, top_k, top_p)
    return out


def _decode(model, out: np.ndarray, n: int, logits: np.ndarray, kv, max_new_tokens: int, rng, temperature,
            top_k, top_p) -> None:
    """Fill ``out[:, n:]`` one token per step, starting from the prefill's ``logits``."""
    L = model.config.context_length
    for step in range(max_new_tokens):
        out[:, n] = output.sample(logits[:, -1], rng, temperature, top_k, top_p)  # (B,)
        n += 1
        if step == max_new_tokens - 1:
            break
        if kv is not None and kv.length < L:
            logits = model.forward(out[:, n - 1:n], kv_cache=kv)  # O(T) step
        else:  # no cache, or the window is full: recompute the last L tokens
            logits = model.forward(out[:, max(n - L, 0):n])
