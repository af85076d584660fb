"""A performance lens: what each stage of the pipeline costs on a prompt, in FLOPs and in wall time.

FLOPs come from the variants themselves (each registers ``flops_per_token``, the
same figures `costs.estimate_flops_per_token` adds up); wall time is read off the
model's own forward, never a second copy of it: a hook records the clock at every
hook point, and the time between two points belongs to the stage between them.

    ids -> [embedding] hook_embed -> [positions] blocks.0.hook_resid_pre
        -> [attention] blocks.i.hook_attn_out ... [feed-forward] blocks.i.hook_mlp_out
        -> [output head] hook_logits

    >>> import numpy as np
    >>> from minitransformer.model import GPT
    >>> rows = stage_costs(GPT("toy", seed=0), np.array([[1, 2, 3, 4]]), repeats=1)
    >>> [r["stage"] for r in rows]
    ['embedding', 'positional', 'attention', 'feedforward', 'output']

Note: the FLOPs of a stage count its matrix products (2 per multiply-add); the
norms, softmax and GELU are not counted, so a stage whose time is mostly those
shows a low GFLOP/s. That gap is the lesson: where the time goes that is not a
matmul.
"""

from __future__ import annotations

import time

import numpy as np

from .. import concepts
from ..core import nn, registry

STAGES = ("embedding", "positional", "attention", "feedforward", "output")


def stage_flops(config, T: int) -> dict:
    """FLOPs (2 per multiply-add) of each stage's forward on a sequence of ``T`` tokens."""
    per_token = {"embedding": 0, "positional": 0}
    for kind, stage in (("attention", "attention"), ("ffn", "feedforward")):
        cost = registry.chosen(kind, config).extras.get("flops_per_token")
        if cost is None:
            raise ValueError(f"the {kind} variant {getattr(config, kind)!r} does not report its cost; "
                             "register it with flops_per_token=...")
        per_token[stage] = config.n_layers * int(cost(config, T))
    per_token["output"] = 2 * config.d_model * config.vocab_size
    return {stage: T * per_token[stage] for stage in STAGES}


def _owner(name: str) -> str:
    """The stage whose work ends at hook point ``name``."""
    if name == "hook_embed":
        return "embedding"
    if name == "blocks.0.hook_resid_pre":
        return "positional"
    if name.endswith("hook_attn_out"):
        return "attention"
    if name.endswith("hook_mlp_out"):
        return "feedforward"
    if name == "hook_logits":
        return "output"
    return ""


def _timed_run(model, ids) -> dict:
    """Seconds per stage of one forward, split at the hook points."""
    spent = dict.fromkeys(STAGES, 0.0)
    clock = {"last": 0.0}

    def hook(name, array):
        owner = _owner(name)
        now = time.perf_counter()
        if owner:
            spent[owner] += now - clock["last"]
            clock["last"] = now
        elif name.endswith("hook_resid_mid") or name.endswith("hook_resid_post") or name.endswith("hook_resid_pre"):
            clock["last"] = now  # the residual additions between stages are nobody's work
        return array

    with nn.no_grad():
        clock["last"] = time.perf_counter()
        model.run_forward(ids, hook=hook)
    return spent


def stage_costs(model, ids, repeats: int = 5) -> list:
    """One row per stage, in data-flow order: stage, concept, FLOPs, median seconds, GFLOP/s, share of time.

    ``ids`` (B, T); the forward is run ``repeats`` times (after one warm-up run) and the median
    taken per stage.
    """
    ids = np.asarray(ids)
    if ids.ndim != 2 or ids.shape[1] == 0:
        raise ValueError(f"ids must be (batch, positions) with at least one position, got shape {ids.shape}")
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    _timed_run(model, ids)  # warm-up: first calls allocate
    runs = [_timed_run(model, ids) for _ in range(repeats)]
    flops = stage_flops(model.config, ids.shape[1])
    total = sum(float(np.median([r[s] for r in runs])) for s in STAGES) or 1.0
    rows = []
    for s in STAGES:
        seconds = float(np.median([r[s] for r in runs]))
        f = flops[s] * ids.shape[0]
        concept = concepts.stage("feedforward" if s == "output" else s).concept  # the head closes stage 5
        rows.append({"stage": s, "concept": concept, "flops": f, "seconds": seconds,
                     "gflops_per_s": f / seconds / 1e9 if seconds > 0 else 0.0, "share": seconds / total})
    return rows


def format_costs(rows: list) -> str:
    """The rows of `stage_costs` as a small table."""
    lines = [f"{'stage':<12} {'concept':<15} {'MFLOP':>9} {'ms':>8} {'GFLOP/s':>8} {'time':>6}"]
    for r in rows:
        lines.append(f"{r['stage']:<12} {r['concept']:<15} {r['flops'] / 1e6:>9.2f} {r['seconds'] * 1e3:>8.3f} "
                     f"{r['gflops_per_s']:>8.1f} {r['share']:>6.0%}")
    return "\n".join(lines)
