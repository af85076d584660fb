"""The step-through demo as one offline HTML page: build its data, inline its assets, write it.

`page_data` gathers what the page shows from the same sources as the rest of the
package: one `model.run_with_cache` (patterns, MLP activations, logits),
`tokenizer.show_work` and `merge_tree` (distinction), `embedding.nearest`
(classification), `trace.logit_lens`, `concepts.STAGES` for the words, and
`model.generate` for the continuation. Nothing of the model is computed twice.

`to_html` inlines that data (JSON), ``assets/page.css`` and ``assets/page.js`` into
``assets/template.html``: one file with no network request of any kind (its
Content-Security-Policy forbids them), which works from ``file://``, projected in a
lecture or inside a notebook (`show`, which wraps it in an iframe).

    >>> from minitransformer.core.config import ModelConfig
    >>> from minitransformer.model import GPT
    >>> from minitransformer.tokenizer import Tokenizer
    >>> tok = Tokenizer.train("the cat sat on the mat " * 20, 300)
    >>> model = GPT(ModelConfig.preset("toy", vocab_size=tok.vocab_size), seed=0)
    >>> data = page_data(tok, model, "the cat")
    >>> [s["concept"] for s in data["stages"]]
    ['distinction', 'classification', 'indexing', 'retrieval', 'processing']

Numbers are rounded to what a figure needs (3 significant digits for vectors,
4 decimals for probabilities and logits), which keeps a 32-token page of the
course model far below 2 MB.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import numpy as np

from ... import concepts, embedding, positional
from ...core.fileio import atomic_write
from ...model import new_kv_cache
from ...tokenizer.files import render_token
from ...tokenizer.show import merge_tree
from ..inputs import check_text, check_top_k
from ..lens import logit_lens

ASSETS = Path(__file__).with_name("assets")
FORMAT = "minitransformer-page"
VERSION = 1


# --------------------------------------------------------------------------- rounding
def _dec(a, decimals: int) -> list:
    """``a`` rounded to ``decimals`` places as nested lists of short floats (float64 first: no 0.1230000034)."""
    return np.round(np.asarray(a, dtype=np.float64), decimals).tolist()


def _sig(a, digits: int = 3) -> list:
    """``a`` rounded to ``digits`` significant digits of its largest magnitude (one scale per array)."""
    a = np.asarray(a, dtype=np.float64)
    top = float(np.max(np.abs(a))) if a.size else 0.0
    decimals = digits - int(np.ceil(np.log10(top))) if top > 0 else digits
    return _dec(a, max(decimals, 0))


# --------------------------------------------------------------------------- the parts
def _stages() -> list[dict]:
    keep = ("number", "key", "name", "module", "concept", "question", "data_in", "data_out", "summary", "notebook")
    return [{k: asdict(s)[k] for k in keep} for s in concepts.STAGES]


def _distinction(tok, work, ids: list[int], first: int) -> dict:
    """Tokens with their bytes and merge trees; ``first`` is how many leading tokens were cropped."""
    trees = {str(i): merge_tree(tok, i) for i in dict.fromkeys(ids) if i < tok.vocab_size}
    return {
        "chunks": [render_token(b) for b in work.chunk_bytes],
        "n_chars": len(work.text),
        "n_bytes": sum(map(len, work.chunk_bytes)),
        "n_merges": len(work.merges),
        "n_tokens_text": len(work.ids),
        "cropped": first,
        "tokens": [{"id": i, "bytes": list(tok.token_bytes(i))} for i in ids],
        "trees": trees,
    }


def _classification(W_E: np.ndarray, ids: list[int], k: int) -> dict:
    """PCA of the rows of W_E (V_tok, C) to 2-D, and each prompt token's nearest neighbours.

    note: the directions are fitted on the rows of merged tokens and printable ASCII bytes.
    The other raw bytes (control characters, pieces of UTF-8) are rare in a training text, so
    their rows barely move from where they started; fitted on, they would spend the first
    component on "seen or not" instead of on kinds of tokens. Every row is still drawn.
    """
    ids_all = np.arange(W_E.shape[0])
    fit = (ids_all >= 256) | ((ids_all >= 32) & (ids_all < 127))  # (V,) rows that shape the map
    if fit.sum() < 3:
        fit[:] = True
    mean = W_E[fit].astype(np.float64).mean(axis=0)  # (C,)
    _, S, Vt = np.linalg.svd(W_E[fit].astype(np.float64) - mean, full_matrices=False)  # rows of Vt: directions
    P = (W_E.astype(np.float64) - mean) @ Vt[:2].T  # (V, C) @ (C, 2) -> (V, 2)
    explained = (S[:2] ** 2 / np.sum(S ** 2)).tolist()
    near = {str(i): [[j, round(s, 3)] for j, s in embedding.nearest(W_E, i, k=k)] for i in dict.fromkeys(ids)}
    frame = np.percentile(P[fit], [1, 99], axis=0)  # (2, 2): what the map's frame shows (outliers on its edge)
    return {"xy": _sig(P, 3), "frame": _sig(frame.T, 3), "explained": _dec(explained, 3), "n_fit": int(fit.sum()),
            "nearest": near}


def _indexing(model, cache, T: int) -> dict:
    """What the positional stage adds: position vectors (T, C), or RoPE angles (T, pairs)."""
    c = model.config
    out = {"variant": c.positional}
    if "hook_pos_embed" in cache:
        out["kind"] = "vectors"
        out["values"] = _sig(cache["hook_pos_embed"][:T], 3)  # (T, C): read from the forward cache
    elif c.positional == "rope":
        width = c.rope_dim if c.attention == "mla" else c.d_head  # MLA rotates only its decoupled channel
        cos, sin = positional.rope_angles(np.arange(T), width, c.rope_base)  # (T, width/2) each
        out["kind"] = "angles"
        out["width"] = int(width)
        out["values"] = _dec(np.mod(np.arctan2(sin, cos), 2 * np.pi), 3)  # (T, width/2): angle in [0, 2pi)
    else:
        out["kind"] = "none"
    return out


def _cache_bytes(config, T: int) -> dict:
    """Bytes per token of the model's own KV cache (all layers), and of full MHA for comparison."""
    kv = new_kv_cache(config, batch_size=1, max_len=T)
    per_token = kv.capacity_nbytes // T  # the cache preallocates T positions of every layer
    itemsize = 4  # float32, as both caches store
    mha = 2 * config.n_layers * config.n_heads * config.d_head * itemsize  # K and V of every head
    out = {"kind": type(kv).__name__, "bytes_per_token": int(per_token), "mha_bytes_per_token": int(mha)}
    if config.attention == "mla":
        out["numbers_per_token"] = int(kv.numbers_per_token)
        out["d_latent"], out["d_rope"] = int(kv.d_latent), int(kv.d_rope)
    else:
        out["kv_heads"] = int(config.kv_heads)
    return out


def _retrieval(model, cache, T: int) -> dict:
    """Attention patterns (L, H, T, T) as the lower triangles, 3 decimals, straight from the cache."""
    c = model.config
    layers = []
    for i in range(c.n_layers):
        p = cache[f"blocks.{i}.attn.hook_pattern"][0]  # (H, T, T)
        layers.append([[_dec(p[h, t, :t + 1], 3) for t in range(T)] for h in range(p.shape[0])])
    return {"patterns": layers, "n_heads": int(c.n_heads), "kv_heads": int(c.kv_heads),
            "attention": c.attention, "cache": _cache_bytes(c, T)}


def _processing(model, cache, logits: np.ndarray, T: int, k: int) -> dict:
    """MLP activation summary, the logit lens at every position, and the final logits."""
    c = model.config
    mlp_mean, mlp_top, widths = [], [], []
    for i in range(c.n_layers):
        name = f"blocks.{i}.mlp.hook_post"
        if name not in cache:  # a mixture of experts without shared experts: its units are the router's scores
            name = f"blocks.{i}.mlp.hook_router_scores"
        post = cache[name][0].astype(np.float64)  # (T, F)
        widths.append(post.shape[-1])
        mlp_mean.append(np.abs(post).mean(axis=1))  # (T,): how strongly each position fires
        top = np.argsort(-np.abs(post), axis=1, kind="stable")[:, :k]  # (T, k) strongest units
        mlp_top.append([[[int(j), round(float(post[t, j]), 3)] for j in top[t]] for t in range(T)])
    lens = []
    for t in range(T):
        rows = logit_lens(model, cache, position=t, k=k)
        lens.append([[r["top_ids"], _dec(r["top_probs"], 4)] for r in rows])
    return {
        "mlp_mean_abs": _sig(np.array(mlp_mean), 3),  # (L, T)
        "mlp_top": mlp_top,  # (L, T, k) of [unit, value]
        "d_ff": int(widths[0]),
        "ffn": c.ffn,
        "lens": lens,  # (T, L) of [top ids, top probs]
        "logits": _dec(logits[0, -1], 4),  # (V,): the page recomputes the distribution from these
    }


def _decode(tok, ids: list[int]) -> str:
    """Text of ``ids``; an id the model has but the tokenizer never produces shows as ``<unused i>``."""
    out, run = [], []
    for i in ids + [None]:
        if i is not None and i < tok.vocab_size:
            run.append(i)
            continue
        out.append(tok.decode(run))  # whole runs, so a character split over two tokens decodes whole
        run = []
        if i is not None:
            out.append(f"<unused {i}>")
    return "".join(out)


# --------------------------------------------------------------------------- the data
def page_data(tokenizer, model, text: str, max_new_tokens: int = 24, seed: int = 0,
              temperature: float = 0.8, top_k: Optional[int] = 40, neighbours: int = 6, top: int = 5) -> dict:
    """Everything the page shows for ``text``, as JSON-ready data (lists, numbers, strings).

    The text is cropped to its last ``context_length`` tokens, as the trace does. The
    continuation is ``model.generate`` with ``temperature``, ``top_k`` and ``seed``.

    Raises:
        TypeError: if ``text`` is not a str.
        ValueError: for empty text, ``top_k`` neither None nor an int in 1..vocab_size, or a
            tokenizer with more ids than the model has rows.
    """
    check_text(text, "show")
    cfg = model.config
    check_top_k(top_k, cfg.vocab_size, allow_none=True)
    top_k = None if top_k is None else int(top_k)  # a numpy int is not JSON
    if tokenizer.vocab_size > cfg.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only {cfg.vocab_size}; "
                         "use the tokenizer the model was trained with")
    work = tokenizer.show_work(text)
    first = max(0, len(work.ids) - cfg.context_length)
    ids = work.ids[first:]  # the last context_length tokens, as the trace crops them
    T = len(ids)
    logits, cache = model.run_with_cache(np.array([ids]))  # the one forward pass everything is read from
    n_tok = tokenizer.vocab_size  # rows beyond it are never produced by the tokenizer
    sample = model.generate(np.array([ids]), max_new_tokens, temperature=temperature, top_k=top_k,
                            seed=seed, crop=True)[0, T:].tolist()
    vocab = [render_token(tokenizer.token_bytes(i)) for i in range(n_tok)]
    vocab += [f"<unused {i}>" for i in range(n_tok, cfg.vocab_size)]
    return {
        "format": FORMAT,
        "version": VERSION,
        "text": text,
        "ids": ids,
        "model": {"summary": repr(model), "config": asdict(cfg), "d_head": int(cfg.d_head)},
        "stages": _stages(),
        "vocab": vocab,
        "distinction": _distinction(tokenizer, work, ids, first),
        "classification": _classification(model.params["embed"]["W_E"][:n_tok], ids, neighbours),
        "indexing": _indexing(model, cache, T),
        "retrieval": _retrieval(model, cache, T),
        "processing": _processing(model, cache, logits, T, top),
        "generation": {"ids": sample, "text": _decode(tokenizer, sample), "prompt_text": _decode(tokenizer, ids),
                       "temperature": temperature, "top_k": top_k, "seed": seed},
    }


# --------------------------------------------------------------------------- the file
def _json_for_script(data: dict) -> str:
    """JSON safe inside <script>: no '<', '>', '&' or '/' characters survive (so no '</script>', no '//')."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("/", "\\/")):
        text = text.replace(ch, esc)
    return text


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def render(data: dict) -> str:
    """The page for ``data`` (from `page_data`): template with CSS, JS and data inlined."""
    parts = {
        "TITLE": html.escape(f"minitransformer: {data['text'][:60]}").replace("/", "&#47;"),  # no '//' in the page
        "CSS": _asset("page.css"),
        "JS": _asset("page.js"),
        "DATA": _json_for_script(data),
    }
    # one pass, so nothing inserted is scanned again for placeholders
    return re.sub(r"\{\{(TITLE|CSS|JS|DATA)\}\}", lambda m: parts[m.group(1)], _asset("template.html"))


def to_html(tokenizer, model, text: str, path=None, **kwargs) -> str:
    """The page for ``text`` as one HTML string; with ``path``, also written there atomically.

    ``kwargs`` go to `page_data` (``max_new_tokens``, ``seed``, ``temperature``, ``top_k``).
    """
    doc = render(page_data(tokenizer, model, text, **kwargs))
    if path is not None:
        atomic_write(path, doc)
    return doc


class PageDisplay:
    """The page inside a notebook: an iframe whose ``srcdoc`` is the whole file, so its scripts run."""

    def __init__(self, doc: str, height: int = 740):
        self.doc, self.height = doc, int(height)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.doc, quote=True)}" sandbox="allow-scripts" '
                f'style="width:100%;height:{self.height}px;border:1px solid #ccc" '
                'title="minitransformer step-through"></iframe>')

    def __repr__(self) -> str:
        return f"PageDisplay({len(self.doc):,} characters)"


def show(tokenizer, model, text: str, height: int = 740, **kwargs) -> PageDisplay:
    """Display the page inline in Jupyter (the last expression of a cell): ``show(tok, model, "text")``."""
    return PageDisplay(to_html(tokenizer, model, text, **kwargs), height)
