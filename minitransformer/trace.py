"""Seeing inside: every activation under a stable name, hooks, and the step-through pipeline.

Three tools, all built from the model's own forward caches (never from a second
copy of the computation):

- `run_with_cache(model, ids)` runs the model once and returns the logits and an
  `ActivationCache` mapping published names to arrays. Names follow
  TransformerLens where it has one (``hook_embed``, ``blocks.0.attn.hook_pattern``,
  ``blocks.0.hook_resid_post``, ...), so what a student learns here carries over.
  `hook_table` lists every name with its shape, stage and concept; the same table
  is published in ``docs/hooks.md`` and a test keeps the two identical.
- `run_with_hooks(model, ids, hooks={name: fn})` lets a function read or replace an
  activation while the model runs: ablate a head (``blocks.0.attn.hook_z``), patch
  a position (``blocks.1.hook_resid_pre``).
- `Pipeline(tokenizer, model).trace(text)` returns the steps of the pipeline in the
  order the data flows, each paired with its stage and concept from `concepts.py`:
  distinction, classification, indexing, retrieval (one step per layer),
  processing. Every step can `describe()` itself in words and `show()` a figure.

    >>> from minitransformer.model import GPT
    >>> model = GPT("toy", seed=0)
    >>> logits, cache = model.run_with_cache(np.array([[1, 2, 3]]))
    >>> cache["pattern", 0].shape            # blocks.0.attn.hook_pattern: (B, H, T, T)
    (1, 4, 3, 3)
    >>> "blocks.1.hook_resid_post" in cache
    True

Note on shapes: attention activations are stored head-major, (B, H, T, D), the
layout the computation uses; TransformerLens stores (B, T, H, D). ``hook_z`` is
the exception and is (B, T, H, D) in both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Union

import numpy as np

from . import concepts, embedding, feedforward, nn
from .model import GPT, _norm_forward
from .model import forward as model_forward

NamesFilter = Union[None, str, list, tuple, set, Callable[[str], bool]]


# --------------------------------------------------------------------------- the name table
def hook_table(config) -> list[dict]:
    """Every published activation name for ``config``: name, shape, stage, concept, hookable, meaning.

    ``{i}`` in a name stands for the layer index. Shapes use B (batch), T (positions), C (width),
    H (heads), G (key/value heads), D (head width), F (MLP width), V (vocabulary).
    """
    rows = [
        ("hook_embed", "(B, T, C)", "embedding", True, "the rows of W_E looked up for the ids"),
    ]
    if config.positional in ("learned", "sinusoidal"):
        rows.append(("hook_pos_embed", "(T, C)", "positional", False, "the position vectors added to the embeddings"))
    rows += [
        ("blocks.{i}.hook_resid_pre", "(B, T, C)", "attention", True, "the residual stream entering block i"),
        ("blocks.{i}.ln1.hook_normalized", "(B, T, C)", "attention", False, "the stream normalised for attention, gain and bias applied (what attention reads)"),
    ]
    if config.attention == "mla":
        rows += [
            ("blocks.{i}.attn.hook_latent", "(B, T, Dc)", "attention", False,
             "MLA: the compressed index entry c_KV of each position (what the cache stores)"),
        ]
        if config.latent_q_dim:
            rows.append(("blocks.{i}.attn.hook_latent_q", "(B, T, Dq)", "attention", False, "MLA: the query latent c_Q"))
        rows += [
            ("blocks.{i}.attn.hook_q", "(B, H, T, D)", "attention", False, "MLA: content queries"),
            ("blocks.{i}.attn.hook_rot_q", "(B, H, T, Dr)", "positional", False, "MLA: per-head rotated queries (decoupled RoPE)"),
            ("blocks.{i}.attn.hook_rot_k", "(B, T, Dr)", "positional", False,
             "MLA: the one rotated key shared by all heads (cached)"),
            ("blocks.{i}.attn.hook_k", "(B, H, T, D)", "attention", False, "MLA: content keys rebuilt from the latent"),
            ("blocks.{i}.attn.hook_v", "(B, H, T, D)", "attention", False, "MLA: values rebuilt from the latent"),
        ]
    else:
        rows += [
            ("blocks.{i}.attn.hook_q", "(B, H, T, D)", "attention", False, "queries: what each position looks for"),
            ("blocks.{i}.attn.hook_k", "(B, G, T, D)", "attention", False, "keys: how each position can be found"),
            ("blocks.{i}.attn.hook_v", "(B, G, T, D)", "attention", False, "values: what each position holds"),
        ]
        if config.positional == "rope":
            rows += [
                ("blocks.{i}.attn.hook_rot_q", "(B, H, T, D)", "positional", False, "queries rotated to their positions (RoPE)"),
                ("blocks.{i}.attn.hook_rot_k", "(B, G, T, D)", "positional", False, "keys rotated to their positions (RoPE)"),
            ]
    rows += [
        ("blocks.{i}.attn.hook_attn_scores", "(B, H, T, T)", "attention", False, "scaled query-key scores, -inf on the future"),
        ("blocks.{i}.attn.hook_pattern", "(B, H, T, T)", "attention", True, "softmax of the scores: how much each key is retrieved"),
        ("blocks.{i}.attn.hook_z", "(B, T, H, D)", "attention", True, "what each head retrieved (pattern @ v)"),
        ("blocks.{i}.hook_attn_out", "(B, T, C)", "attention", True, "what attention adds to the residual stream"),
        ("blocks.{i}.hook_resid_mid", "(B, T, C)", "attention", True, "the stream after attention"),
        ("blocks.{i}.ln2.hook_normalized", "(B, T, C)", "feedforward", False, "the stream normalised for the MLP, gain and bias applied (what the MLP reads)"),
        ("blocks.{i}.mlp.hook_pre", "(B, T, F)", "feedforward", False,
         "MLP hidden pre-activation (SwiGLU: the gate)"),
    ]
    if config.ffn == "swiglu":
        rows.append(("blocks.{i}.mlp.hook_pre_linear", "(B, T, F)", "feedforward", False, "SwiGLU's linear branch"))
    rows += [
        ("blocks.{i}.mlp.hook_post", "(B, T, F)", "feedforward", False, "MLP hidden activation, read by W_out"),
        ("blocks.{i}.hook_mlp_out", "(B, T, C)", "feedforward", True, "what the MLP adds to the residual stream"),
        ("blocks.{i}.hook_resid_post", "(B, T, C)", "feedforward", True, "the residual stream leaving block i"),
        ("ln_final.hook_normalized", "(B, T, C)", "feedforward", False, "the final stream, normalised, gain and bias applied (what the output head reads)"),
        ("hook_logits", "(B, T, V)", "feedforward", True, "scores for every next token"),
    ]
    return [
        {"name": n, "shape": shape, "stage": st, "concept": concepts.stage(st).concept, "hookable": h, "meaning": m}
        for n, shape, st, h, m in rows
    ]


def hook_table_markdown(config) -> str:
    """The name table as the markdown published in ``docs/hooks.md``."""
    lines = [
        "| name | shape | stage | concept | hookable | what it holds |",
        "|---|---|---|---|---|---|",
    ]
    for r in hook_table(config):
        lines.append(f"| `{r['name']}` | {r['shape']} | {r['stage']} | {r['concept']} | "
                     f"{'yes' if r['hookable'] else ''} | {r['meaning']} |")
    return "\n".join(lines) + "\n"


def hooks_document() -> str:
    """The whole of ``docs/hooks.md``: the default model's names, then those other variants add.

    Regenerate the file with ``python -c "from minitransformer.trace import hooks_document as d; open('docs/hooks.md', 'w').write(d())"``.
    """
    from .config import ModelConfig

    base = hook_table_markdown(ModelConfig.preset("toy"))
    variant = hook_table_markdown(ModelConfig.preset("toy", positional="rope", ffn="swiglu")).splitlines()
    extra = variant[:2] + [line for line in variant[2:] if line not in base]
    mla = hook_table_markdown(ModelConfig.preset("toy", attention="mla", positional="rope", d_latent_q=16)).splitlines()
    mla = mla[:2] + [line for line in mla[2:] if "MLA" in line]
    return "\n".join([
        "# Activation names",
        "",
        "`model.run_with_cache(ids)` returns every activation under these names, and",
        "`model.run_with_hooks(ids, hooks={name: fn})` can replace the ones marked",
        "*hookable*. `{i}` is the layer index. The names follow TransformerLens where it",
        "has one; attention activations are stored head-major, `(B, H, T, D)`, where",
        "TransformerLens uses `(B, T, H, D)`.",
        "",
        "This file is generated by `minitransformer.trace.hooks_document()`, and",
        "`tests/test_trace.py` checks that it has not drifted from the code.",
        "",
        "## Default model (learned positions, GELU MLP)",
        "",
        base,
        '## Extra names with `positional="rope"` and `ffn="swiglu"`',
        "",
        *extra,
        "",
        '## With `attention="mla"` (Multi-Head Latent Attention), instead of the attention rows above',
        "",
        "Dc is the latent width, Dq the query latent's, Dr the decoupled RoPE width.",
        "",
        *mla,
        "",
        "The tokenizer shows its work under `tokenize.hook_chunks`, `tokenize.hook_bytes`,",
        "`tokenize.hook_merges` and `tokenize.hook_ids` (`Tokenizer.show_work(text).hooks()`).",
        "",
    ])


# --------------------------------------------------------------------------- the cache
class ActivationCache:
    """Activations by name, with TransformerLens-style shorthand.

    ``cache["blocks.0.attn.hook_pattern"]`` or ``cache["pattern", 0]`` (short name, layer);
    ``cache["embed"]`` for ``hook_embed``. ``keys()``, ``items()``, ``in`` and ``len`` work as
    for a dict, and ``repr`` lists the names.
    """

    def __init__(self, arrays: dict[str, np.ndarray]):
        self._arrays = arrays

    def _resolve(self, key) -> str:
        if isinstance(key, tuple):
            if len(key) != 2 or not isinstance(key[1], (int, np.integer)):
                raise KeyError(f"use cache[name] or cache[short_name, layer], got {key!r}")
            short, layer = key
            short = short[5:] if short.startswith("hook_") else short
            short = {"scores": "attn_scores"}.get(short, short)
            for sub in ("attn.", "mlp.", "", "ln1.", "ln2."):
                name = f"blocks.{layer}.{sub}hook_{short}"
                if name in self._arrays:
                    return name
            raise KeyError(f"no activation {short!r} in layer {layer}; names of that layer: "
                           f"{[n for n in self._arrays if n.startswith(f'blocks.{layer}.')]}")
        if key in self._arrays:
            return key
        if f"hook_{key}" in self._arrays:
            return f"hook_{key}"
        raise KeyError(f"no activation {key!r}; the cache holds {list(self._arrays)}")

    def __getitem__(self, key) -> np.ndarray:
        return self._arrays[self._resolve(key)]

    def __contains__(self, key) -> bool:
        try:
            self._resolve(key)
            return True
        except KeyError:
            return False

    def keys(self):
        return self._arrays.keys()

    def items(self):
        return self._arrays.items()

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} activations: " + ", ".join(self._arrays) + ")"


def _name_filter(names_filter: NamesFilter) -> Callable[[str], bool]:
    if names_filter is None:
        return lambda name: True
    if isinstance(names_filter, str):
        return lambda name: name == names_filter
    if isinstance(names_filter, (list, tuple, set)):
        wanted = set(names_filter)
        return lambda name: name in wanted
    if callable(names_filter):
        return names_filter
    raise ValueError(f"names_filter must be None, a name, a list of names or a function name -> bool, "
                     f"got {type(names_filter).__name__}")


def collect(model: GPT, cache: dict, logits: np.ndarray) -> dict[str, np.ndarray]:
    """Flatten a forward cache into published names (see `hook_table`); no copies, no recomputation."""
    c = model.config
    out = {"hook_embed": cache["embed"]["hook_embed"]}
    if cache["pos"] is not None and cache["pos"].get("hook_pos_embed") is not None:
        out["hook_pos_embed"] = cache["pos"]["hook_pos_embed"]
    for i, b in enumerate(cache["blocks"]):
        p = f"blocks.{i}."
        out[p + "hook_resid_pre"] = b["hook_resid_pre"]
        out[p + "ln1.hook_normalized"] = b["ln1_out"]
        for k, v in b["attn"].items():
            if k.startswith("hook_"):
                out[p + "attn." + k] = v
        z = out[p + "attn.hook_z"]
        out[p + "attn.hook_z"] = z.reshape(*z.shape[:2], c.n_heads, -1)  # (B, T, H*D) -> (B, T, H, D)
        out[p + "hook_attn_out"] = b["hook_attn_out"]
        out[p + "hook_resid_mid"] = b["hook_resid_mid"]
        out[p + "ln2.hook_normalized"] = b["ln2_out"]
        for k, v in b["mlp"].items():
            if k.startswith("hook_"):
                out[p + "mlp." + k] = v
        out[p + "hook_mlp_out"] = b["hook_mlp_out"]
        out[p + "hook_resid_post"] = b["hook_resid_post"]
    out["ln_final.hook_normalized"] = cache["ln_final_out"]
    out["hook_logits"] = logits
    return out


def run_with_cache(model: GPT, ids, names_filter: NamesFilter = None):
    """Run ``model`` on ids (B, T); return ``(logits, ActivationCache)`` of the names that pass the filter.

    ``names_filter`` is a name, a list of names, or a function ``name -> bool``.
    """
    keep = _name_filter(names_filter)
    logits, cache = model_forward(model.params, model.config, ids, need_cache=True, record=True)
    arrays = {n: a for n, a in collect(model, cache, logits).items() if keep(n)}
    return logits, ActivationCache(arrays)


def run_with_hooks(model: GPT, ids, hooks: dict[str, Callable]) -> np.ndarray:
    """Run ``model`` with ``hooks = {name: fn}``; ``fn(array)`` (or ``fn(array, name)``) may return a
    replacement (or None to leave it). Hookable names are marked in `hook_table`.

    >>> model = GPT("toy", seed=0)
    >>> ablate_head_0 = lambda z: np.concatenate([np.zeros_like(z[:, :, :1]), z[:, :, 1:]], axis=2)
    >>> logits = run_with_hooks(model, np.array([[1, 2, 3]]), {"blocks.0.attn.hook_z": ablate_head_0})
    >>> logits.shape
    (1, 3, 64)
    """
    hookable = {r["name"] for r in hook_table(model.config) if r["hookable"]}
    for name in hooks:
        generic = re.sub(r"^blocks\.\d+\.", "blocks.{i}.", name)
        layer = re.match(r"^blocks\.(\d+)\.", name)
        if generic not in hookable or (layer and int(layer.group(1)) >= model.config.n_layers):
            raise ValueError(f"{name!r} is not a hook point of this model; hook points are "
                             f"{sorted(hookable)} with {{i}} in 0..{model.config.n_layers - 1}")

    def hook(name: str, array: np.ndarray) -> np.ndarray:
        fn = hooks.get(name)
        if fn is None:
            return array
        try:
            result = fn(array, name)
        except TypeError:
            result = fn(array)
        if result is None:
            return array
        result = np.asarray(result, dtype=array.dtype)
        if result.shape != array.shape:
            raise ValueError(f"the hook on {name!r} returned shape {result.shape}; it must keep {array.shape}")
        return result

    with nn.no_grad():
        return model_forward(model.params, model.config, ids, hook=hook)[0]


def logit_lens(model: GPT, cache: ActivationCache, position: int = -1, k: int = 5) -> list[dict]:
    """The next-token guess read from the residual stream after each block (nostalgebraist, 2020).

    Applies the final norm and the output head to ``blocks.{i}.hook_resid_post`` at ``position``
    of the first sequence: how the prediction forms layer by layer.
    Returns one dict per layer: ``{"layer", "top_ids", "top_probs"}``.
    """
    c, params = model.config, model.params
    W_E = params["embed"]["W_E"] if c.tie_embeddings else None
    rows = []
    for i in range(c.n_layers):
        resid = cache[f"blocks.{i}.hook_resid_post"][0, position]  # (C,)
        h, _ = _norm_forward(c, params["ln_final"], resid[None, None])  # (1, 1, C)
        logits, _ = feedforward.head_forward(params["unembed"], h, W_E=W_E, need_cache=False)  # (1, 1, V)
        probs = nn.softmax(logits[0, 0].astype(np.float64))
        top = np.argsort(-probs, kind="stable")[:k]
        rows.append({"layer": i, "top_ids": top.tolist(), "top_probs": probs[top].tolist()})
    return rows


# --------------------------------------------------------------------------- the step-through pipeline
@dataclass
class Step:
    """One step of the pipeline: a stage, its concept, an explanation, and the arrays it produced."""

    stage: concepts.Stage
    title: str
    explanation: str
    arrays: dict = field(default_factory=dict)
    text: str = ""  # what `describe` prints after the explanation
    figure: Optional[Callable] = None  # builds the figure for `show`

    @property
    def concept(self) -> str:
        return self.stage.concept

    def describe(self) -> str:
        head = f"[{self.stage.number}. {self.stage.name} | {self.concept}] {self.title}"
        return f"{head}\n{self.explanation}\n{self.text}".rstrip()

    def show(self):
        """A matplotlib Figure of this step."""
        if self.figure is None:
            raise ValueError(f"step {self.title!r} has no figure")
        return self.figure()

    def __repr__(self) -> str:
        return f"Step({self.stage.number}, {self.concept!r}, {self.title!r}, arrays={list(self.arrays)})"


class Pipeline:
    """A tokenizer and a model, traced together on real text.

    >>> from minitransformer.config import ModelConfig
    >>> from minitransformer.tokenizer import Tokenizer
    >>> tok = Tokenizer.train("the cat sat on the mat " * 20, 300)
    >>> model = GPT(ModelConfig.preset("toy", vocab_size=300), seed=0)
    >>> steps = Pipeline(tok, model).trace("the cat")
    >>> [s.concept for s in steps][:3]
    ['distinction', 'classification', 'indexing']
    """

    def __init__(self, tokenizer, model: GPT):
        if tokenizer.vocab_size > model.config.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only "
                             f"{model.config.vocab_size}; use the tokenizer the model was trained with")
        self.tokenizer, self.model = tokenizer, model

    def steps(self, text: str, temperature: float = 1.0, top_k: int = 10) -> Iterator[Step]:
        """The steps of the pipeline on ``text``, one at a time, in the order the data flows."""
        from . import viz

        tok, model, cfg = self.tokenizer, self.model, self.model.config
        work = tok.show_work(text)
        ids = np.array([work.ids[-cfg.context_length:]])
        if ids.shape[1] == 0:
            raise ValueError("the text is empty: give at least one character to trace")
        labels = [tok.decode([i]) for i in ids[0].tolist()]
        n_tok = tok.vocab_size  # the model may have more rows than the tokenizer has ids (never produced)

        def name(i: int) -> str:
            return tok.decode([i]) if i < n_tok else f"<unused {i}>"

        yield Step(concepts.stage("tokenization"), "text -> chunks -> bytes -> merges -> ids",
                   concepts.stage("tokenization").summary,
                   {"tokenize.hook_chunks": work.chunks, "tokenize.hook_bytes": work.chunk_bytes,
                    "tokenize.hook_merges": work.merges, "tokenize.hook_ids": work.ids},
                   text=work.describe(tok, max_steps=8),
                   figure=lambda: viz.token_boundaries(labels, ids[0].tolist()))

        logits, cache = run_with_cache(model, ids)
        W_E = model.params["embed"]["W_E"][:n_tok]  # (V_tok, C): rows of ids the tokenizer can produce
        neighbours = {int(i): embedding.nearest(W_E, int(i), k=3) for i in set(ids[0].tolist())}
        lines = [f"  {labels[t]!r:>14} (id {i}) is near " + ", ".join(f"{name(j)!r}" for j, _ in neighbours[i])
                 for t, i in enumerate(ids[0].tolist())][:12]
        yield Step(concepts.stage("embedding"), "ids -> vectors (rows of W_E)", concepts.stage("embedding").summary,
                   {"hook_embed": cache["hook_embed"], "nearest": neighbours},
                   text="\n".join(lines),
                   figure=lambda: viz.embedding_map(W_E, ids[0].tolist(), [name(i) for i in range(n_tok)]))

        pos_arrays = {k: cache[k] for k in ("hook_pos_embed",) if k in cache}
        if cfg.positional == "rope":
            pos_arrays = {"blocks.0.attn.hook_q": cache["blocks.0.attn.hook_q"],
                          "blocks.0.attn.hook_rot_q": cache["blocks.0.attn.hook_rot_q"]}
        yield Step(concepts.stage("positional"), f"where each token stands ({cfg.positional} positions)",
                   concepts.stage("positional").summary, pos_arrays,
                   text=_positional_text(cfg, ids.shape[1]),
                   figure=lambda: viz.positional_heatmap(cfg, max(ids.shape[1], 2), W_pos=model.params["pos"].get("W_pos")))

        for i in range(cfg.n_layers):
            pattern = cache[f"blocks.{i}.attn.hook_pattern"]
            yield Step(concepts.stage("attention"), f"layer {i}: queries retrieve from earlier positions",
                       concepts.stage("attention").summary,
                       {n: cache[n] for n in cache if n.startswith(f"blocks.{i}.attn.")},
                       text=_retrieval_text(pattern[0], labels),
                       figure=lambda p=pattern, i=i: viz.attention_patterns(p[0][None], labels, title=f"layer {i}"))

        probs = feedforward.probabilities(logits[0, -1], temperature=temperature)
        top = np.argsort(-probs, kind="stable")[:top_k]
        lens = logit_lens(model, cache)
        text_lines = [f"  layer {r['layer']}: guesses {name(r['top_ids'][0])!r} ({r['top_probs'][0]:.1%})"
                      for r in lens]
        text_lines.append("next token: " + ", ".join(f"{name(int(j))!r} {probs[j]:.1%}" for j in top[:5]))
        yield Step(concepts.stage("feedforward"), "MLPs process each position; the head predicts the next token",
                   concepts.stage("feedforward").summary,
                   {**{n: cache[n] for n in cache if ".mlp." in n}, "ln_final.hook_normalized": cache["ln_final.hook_normalized"],
                    "hook_logits": logits, "probs": probs, "next_id": int(top[0]), "logit_lens": lens},
                   text="\n".join(text_lines),
                   figure=lambda: viz.next_token_bars(probs, [name(j) for j in range(len(probs))], k=top_k))

    def trace(self, text: str, **kwargs) -> list[Step]:
        """All steps of `steps` as a list."""
        return list(self.steps(text, **kwargs))


def _positional_text(cfg, T: int) -> str:
    if cfg.positional == "learned":
        return f"  each of the {T} positions adds its own learned row of W_pos to the token's vector"
    if cfg.positional == "sinusoidal":
        return f"  each of the {T} positions adds a fixed pattern of sines and cosines (fast to slow clocks)"
    if cfg.positional == "rope":
        return "  queries and keys are rotated by angles proportional to their position inside attention"
    if cfg.positional == "none":
        return "  no position information: the model sees a bag of tokens"
    return f"  positions come from the registered variant {cfg.positional!r}"


def _retrieval_text(pattern: np.ndarray, labels: list[str]) -> str:
    """For the last position, the token each head retrieves most from. pattern (H, T, T)."""
    lines = []
    t = pattern.shape[-1] - 1
    for h in range(pattern.shape[0]):
        j = int(np.argmax(pattern[h, t]))
        lines.append(f"  head {h}: {labels[t]!r} retrieves most from {labels[j]!r} (position {j}, {pattern[h, t, j]:.0%})")
    return "\n".join(lines)
