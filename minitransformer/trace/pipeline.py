"""The step-through pipeline: a tokenizer and a model, traced together on real text.

`Pipeline(tokenizer, model).trace(text)` returns the steps of the pipeline in the
order the data flows, each paired with its stage and concept from `concepts.py`:
distinction, classification, indexing, retrieval (one step per layer),
processing. Every step can `describe()` itself in words and `show()` a figure.
The steps are built from the model's own forward caches (`trace.cache`), never
from a second copy of the computation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from .. import concepts, embedding
from ..figures import stages as figures
from ..core import registry
from ..feedforward.output import probabilities
from ..model import GPT
from . import page, perf
from .cache import run_with_cache
from .inputs import check_text, check_top_k
from .lens import logit_lens


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

    >>> from minitransformer.core.config import ModelConfig
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
        """The steps of the pipeline on ``text``, one at a time, in the order the data flows.

        A text longer than the model's context is cropped to its last ``context_length``
        tokens, as the HTML page does: step 1's ``tokenize.hook_ids`` holds every id of the
        text and its description says how many were cropped; every later step sees only
        the last ``context_length``. ``top_k`` is how many likely next tokens the last step's
        figure shows.

        Raises:
            TypeError: if ``text`` is not a str.
            ValueError: for empty text, or ``top_k`` not an int in 1..vocab_size.
        """
        check_text(text, "trace")
        check_top_k(top_k, self.model.config.vocab_size)
        return self._steps(text, temperature, top_k)

    def _steps(self, text: str, temperature: float, top_k: int) -> Iterator[Step]:
        tok, model, cfg = self.tokenizer, self.model, self.model.config
        work = tok.show_work(text)
        first = max(0, len(work.ids) - cfg.context_length)  # how many leading tokens are cropped
        ids = np.array([work.ids[first:]])
        labels = [tok.decode([i]) for i in ids[0].tolist()]
        n_tok = tok.vocab_size  # the model may have more rows than the tokenizer has ids (never produced)

        def name(i: int) -> str:
            return tok.decode([i]) if i < n_tok else f"<unused {i}>"

        work_lines = work.describe(tok, max_steps=8).split("\n")
        if first:  # worded as the page words it
            work_lines.insert(1, f"the first {first} of {len(work.ids)} tokens are cropped to fit the context of "
                                 f"{cfg.context_length}: only the last {ids.shape[1]} go on through the model")
        yield Step(concepts.stage("tokenization"), "text -> chunks -> bytes -> merges -> ids",
                   concepts.stage("tokenization").summary,
                   {"tokenize.hook_chunks": work.chunks, "tokenize.hook_bytes": work.chunk_bytes,
                    "tokenize.hook_merges": work.merges, "tokenize.hook_ids": work.ids},
                   text="\n".join(work_lines),
                   figure=lambda: figures.token_boundaries(labels, ids[0].tolist()))

        logits, cache = run_with_cache(model, ids)
        W_E = model.params["embed"]["W_E"][:n_tok]  # (V_tok, C): rows of ids the tokenizer can produce
        neighbours = {int(i): embedding.nearest(W_E, int(i), k=3) for i in set(ids[0].tolist())}
        lines = [f"  {labels[t]!r:>14} (id {i}) is near " + ", ".join(f"{name(j)!r}" for j, _ in neighbours[i])
                 for t, i in enumerate(ids[0].tolist())][:12]
        yield Step(concepts.stage("embedding"), "ids -> vectors (rows of W_E)", concepts.stage("embedding").summary,
                   {"hook_embed": cache["hook_embed"], "nearest": neighbours},
                   text="\n".join(lines),
                   figure=lambda: figures.embedding_map(W_E, ids[0].tolist(), [name(i) for i in range(n_tok)]))

        pos_arrays = {k: cache[k] for k in ("hook_pos_embed",) if k in cache}
        if registry.is_rotary(cfg):
            pos_arrays = {"blocks.0.attn.hook_q": cache["blocks.0.attn.hook_q"],
                          "blocks.0.attn.hook_rot_q": cache["blocks.0.attn.hook_rot_q"]}
        yield Step(concepts.stage("positional"), f"where each token stands ({cfg.positional} positions)",
                   concepts.stage("positional").summary, pos_arrays,
                   text=_positional_text(cfg, ids.shape[1]),
                   figure=lambda: figures.positional_heatmap(cfg, max(ids.shape[1], 2), W_pos=model.params["pos"].get("W_pos")))

        for i in range(cfg.n_layers):
            pattern = cache[f"blocks.{i}.attn.hook_pattern"]
            yield Step(concepts.stage("attention"), f"layer {i}: queries retrieve from earlier positions",
                       concepts.stage("attention").summary,
                       {n: cache[n] for n in cache if n.startswith(f"blocks.{i}.attn.")},
                       text=_retrieval_text(pattern[0], labels),
                       figure=lambda p=pattern, i=i: figures.attention_patterns(p[0][None], labels, title=f"layer {i}"))

        probs = probabilities(logits[0, -1], temperature=temperature)
        top = np.argsort(-probs, kind="stable")[:top_k]
        lens = logit_lens(model, cache)
        text_lines = [f"  layer {r['layer']}: guesses {name(r['top_ids'][0])!r} ({r['top_probs'][0]:.1%})"
                      for r in lens]
        text_lines.append("next token: " + ", ".join(f"{name(int(j))!r} {probs[j]:.1%}" for j in top[:5]))
        if cfg.ffn == "moe":  # which specialists processed each token
            text_lines = _expert_text(cache, cfg, labels) + text_lines
        yield Step(concepts.stage("feedforward"), "MLPs process each position; the head predicts the next token",
                   concepts.stage("feedforward").summary,
                   {**{n: cache[n] for n in cache if ".mlp." in n}, "unembed.hook_in": cache["unembed.hook_in"],
                    "hook_logits": logits, "probs": probs, "next_id": int(top[0]), "logit_lens": lens},
                   text="\n".join(text_lines),
                   figure=lambda: figures.next_token_bars(probs, [name(j) for j in range(len(probs))], k=top_k))

    def trace(self, text: str, **kwargs) -> list[Step]:
        """All steps of `steps` as a list."""
        return list(self.steps(text, **kwargs))

    def performance(self, text: str, repeats: int = 5) -> list:
        """FLOPs and wall time of each stage's forward on ``text`` (see `trace.perf.stage_costs`),
        cropped to its last ``context_length`` tokens as in `steps`."""
        check_text(text, "measure")
        ids = np.array([self.tokenizer.encode(text)[-self.model.config.context_length:]])
        return perf.stage_costs(self.model, ids, repeats=repeats)

    def to_html(self, text: str, path=None, **kwargs) -> str:
        """The steps of ``text`` as one self-contained, offline HTML page (see `trace.page`).

        Returns the page; with ``path`` it is also written there (atomically).
        """
        return page.to_html(self.tokenizer, self.model, text, path, **kwargs)

    def show_html(self, text: str, **kwargs):
        """The same page, displayed inline in Jupyter (an iframe holding the whole file)."""
        return page.show(self.tokenizer, self.model, text, **kwargs)


def _positional_text(cfg, T: int) -> str:
    if cfg.positional == "learned":
        return f"  each of the {T} positions adds its own learned row of W_pos to the token's vector"
    if cfg.positional == "sinusoidal":
        return f"  each of the {T} positions adds a fixed pattern of sines and cosines (fast to slow clocks)"
    if cfg.positional == "rope":
        return "  queries and keys are rotated by angles proportional to their position inside attention"
    if registry.is_rotary(cfg):
        return f"  the registered variant {cfg.positional!r} rotates queries and keys inside attention"
    if cfg.positional == "none":
        return "  no position information: the model sees a bag of tokens"
    return f"  positions come from the registered variant {cfg.positional!r}"


def _expert_text(cache, cfg, labels: list[str], max_tokens: int = 12) -> list[str]:
    """For each MoE layer, the routed experts (and gates) that processed each token, best first."""
    lines = []
    for i in range(cfg.first_dense_layers, cfg.n_layers):
        ids = cache[f"blocks.{i}.mlp.hook_expert_ids"][0]  # (T, K)
        gates = cache[f"blocks.{i}.mlp.hook_gates"][0]  # (T, K)
        shared = f" + {cfg.n_shared_experts} shared" if cfg.n_shared_experts else ""
        lines.append(f"  layer {i}: the experts each token went to (gate){shared}")
        for t in range(min(len(labels), max_tokens)):
            chosen = ", ".join(f"e{int(e)} ({g:.2f})" for e, g in zip(ids[t], gates[t]))
            lines.append(f"    {labels[t]!r:>14} -> {chosen}")
    return lines


def _retrieval_text(pattern: np.ndarray, labels: list[str]) -> str:
    """For the last position, the token each head retrieves most from. pattern (H, T, T)."""
    lines = []
    t = pattern.shape[-1] - 1
    for h in range(pattern.shape[0]):
        j = int(np.argmax(pattern[h, t]))
        lines.append(f"  head {h}: {labels[t]!r} retrieves most from {labels[j]!r} (position {j}, {pattern[h, t, j]:.0%})")
    return "\n".join(lines)
