"""The whole course model on one page: its forward pass in plain numpy, read in one sitting.

The package spreads the pipeline over stages, variants, caches and hooks so that
each piece can be stepped through, drawn and replaced. This page does the same
computation with none of that: every line below is one of the equations the
stages teach, in the order the data flows, for the course model's variants
(learned positions, multi-head attention, a GELU MLP, LayerNorm, a tied output
head, biases). A test checks that it gives the model's logits to rounding.

    ids (B, T)
      x = W_E[ids] + W_pos[positions]                         embedding + positions
      for each block:
          x = x + attention(layernorm(x))                     retrieval
          x = x + mlp(layernorm(x))                           processing
      logits = layernorm(x) @ W_E.T                           the tied output head

    >>> from minitransformer import GPT, ModelConfig
    >>> model = GPT(ModelConfig.preset("toy"), seed=0)
    >>> ids = np.array([[1, 2, 3, 4]])
    >>> bool(np.allclose(forward(model.params, model.config, ids), model.forward(ids), atol=1e-5))
    True

Run it on the course model with ``python -m minitransformer.one_page "some text"``.

Dimension letters: B batch, T positions, C width, H heads, D head width, F MLP
width, V vocabulary.
"""

from __future__ import annotations

import math

import numpy as np


def layernorm(x, w, b, eps):
    """Normalise each vector to mean 0 and variance 1, then scale by w and shift by b."""
    mean = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (B, T, 1)
    return (x - mean) / np.sqrt(var + eps) * w + b  # (B, T, C)


def gelu(x):
    """GPT-2's GELU, in its tanh form."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(x):
    """exp, normalised along the last axis; the max is subtracted first so exp never overflows."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def attention(p, x, n_heads):
    """Causal multi-head self-attention: each position retrieves from itself and the positions before it."""
    B, T, C = x.shape
    D = C // n_heads
    q = x @ p["W_Q"] + p["b_Q"]  # (B, T, C) -> (B, T, H*D): what each position looks for
    k = x @ p["W_K"] + p["b_K"]  # (B, T, H*D): how each position can be found
    v = x @ p["W_V"] + p["b_V"]  # (B, T, H*D): what each position holds
    q, k, v = (a.reshape(B, T, n_heads, D).transpose(0, 2, 1, 3) for a in (q, k, v))  # -> (B, H, T, D)
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D)  # (B, H, T, D) @ (B, H, D, T) -> (B, H, T, T)
    future = np.triu(np.ones((T, T), dtype=bool), k=1)  # (T, T): True above the diagonal
    scores = np.where(future, -np.inf, scores)  # a position never sees the future
    pattern = softmax(scores)  # (B, H, T, T): how much each key is retrieved
    z = pattern @ v  # (B, H, T, T) @ (B, H, T, D) -> (B, H, T, D)
    z = z.transpose(0, 2, 1, 3).reshape(B, T, C)  # the heads side by side: (B, T, H*D)
    return z @ p["W_O"] + p["b_O"]  # (B, T, C): what attention adds to the stream


def mlp(p, x):
    """Widen, apply GELU, narrow back: the same small network at every position."""
    h = gelu(x @ p["W_in"] + p["b_in"])  # (B, T, C) -> (B, T, F)
    return h @ p["W_out"] + p["b_out"]  # (B, T, F) -> (B, T, C)


def forward(params, config, ids):
    """Logits (B, T, V) of ``ids`` (B, T) for the course model's kind of config, in float64."""
    _check(config)
    ids = np.asarray(ids)
    p = _float64(params)
    T = ids.shape[1]
    eps = config.norm_eps
    x = p["embed"]["W_E"][ids] + p["pos"]["W_pos"][:T]  # (B, T, C): token vectors, told where they stand
    for block in p["blocks"]:
        x = x + attention(block["attn"], layernorm(x, block["ln1"]["w"], block["ln1"]["b"], eps), config.n_heads)
        x = x + mlp(block["mlp"], layernorm(x, block["ln2"]["w"], block["ln2"]["b"], eps))
    x = layernorm(x, p["ln_final"]["w"], p["ln_final"]["b"], eps)  # (B, T, C)
    return x @ p["embed"]["W_E"].T  # (B, T, C) @ (C, V) -> (B, T, V): a score for every next token


def _float64(tree):
    if isinstance(tree, dict):
        return {k: _float64(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_float64(v) for v in tree]
    return np.asarray(tree, dtype=np.float64)


# the variants this page is written for: the course model's
COURSE_KIND = dict(positional="learned", attention="mha", ffn="gelu", norm="layernorm", tie_embeddings=True,
                   bias=True)


def _check(config):
    wrong = {k: getattr(config, k) for k, v in COURSE_KIND.items() if getattr(config, k) != v}
    if config.kv_heads != config.n_heads:
        wrong["n_kv_heads"] = config.n_kv_heads
    if wrong:
        raise ValueError(f"the one-page model is written for the course model's variants {COURSE_KIND}; this "
                         f"config differs in {wrong}: use minitransformer.model.forward for other variants")


def main(argv=None) -> int:
    """Print the course model's next-token guesses for a prompt, computed on this page."""
    import sys

    from .cli import load_course_model

    text = " ".join((argv if argv is not None else sys.argv[1:]) or ["The return statement"])
    model, tokenizer, _ = load_course_model()
    ids = np.array([tokenizer.encode(text)[-model.config.context_length:]])
    logits = forward(model.params, model.config, ids)[0, -1]  # (V,): scores after the last token
    probs = softmax(logits)
    for i in np.argsort(-probs)[:5]:
        print(f"{tokenizer.decode([int(i)])!r:>12} {probs[i]:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
