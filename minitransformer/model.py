"""The GPT model: the five stages composed into one pipeline, forward and backward.

    ids (B, T)
      -> embedding.forward           x = W_E[ids]                      (classification)
      -> positional.forward          x = x + W_pos[positions]          (indexing; RoPE acts inside attention)
      -> n_layers blocks, each pre-norm with a residual around each sub-layer:
             x = x + attention(norm1(x))                               (retrieval)
             x = x + feedforward(norm2(x))                             (processing)
      -> ln_final, then the output head: logits = x @ W_U (or W_E.T)   (processing)
    logits (B, T, V)

The functions `forward` and `backward` are the whole model; the `GPT` class only
owns the config and the parameter tree and remembers the last cache so that
``model.loss(ids, targets); model.backward()`` reads like a training loop.

Parameters are one nested dict (``params["blocks"][0]["attn"]["W_Q"]``) whose
dotted names (``blocks.0.attn.W_Q``) are used in checkpoints, caches and figures.

Dimension letters: B batch, T time, C width, V vocabulary.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import numpy as np

from . import embedding, generation
from .core import cores, nn, registry
from .core.config import ModelConfig
from .core.memory import keep_freed_memory
from .core.nn import norm_backward, norm_forward
from .core.tree import add_trees, check_like, flatten
from .feedforward import moe, output
from .trace.cache import run_with_cache, run_with_hooks
from .trace.names import block_hook_names


# --------------------------------------------------------------------------- stages by name
# config.positional / .attention / .ffn name a registered variant (see registry.py): the built-ins,
# or a student's own, all with the same stage contract.
def stage(kind: str, config) -> registry.Variant:
    """The registered variant that ``config`` chooses for ``kind`` ("positional", "attention", "ffn"),
    or its reference path when the config asks for it (``attention_impl="reference"``)."""
    return registry.chosen(kind, config)


def layer_ffn(config, layer: int) -> tuple:
    """``(variant, config)`` of block ``layer``'s MLP: a MoE model's first ``first_dense_layers``
    blocks use the dense ``dense_ffn`` (with `ModelConfig.dense_layer_config`), the rest ``config.ffn``."""
    if config.ffn == "moe" and layer < config.first_dense_layers:
        return registry.get("ffn", config.dense_ffn), config.dense_layer_config()
    return stage("ffn", config), config


def attention_module(config) -> registry.Variant:
    """The attention variant chosen by ``config.attention`` (``mha``, ``mla``, or one registered)."""
    return stage("attention", config)


def new_kv_cache(config, batch_size: int = 1, max_len: Optional[int] = None):
    """An empty KV cache of the kind the attention variant uses (`attention.kv_cache`)."""
    make = attention_module(config).extras.get("make_cache")
    if make is None:
        raise ValueError(f"the attention variant {config.attention!r} has no KV cache (register it with "
                         "make_cache=...); generate with use_cache=False")
    return make(config, batch_size=batch_size, max_len=max_len)


# --------------------------------------------------------------------------- parameters
def init_params(config: ModelConfig, rng: np.random.Generator) -> dict:
    """Build the nested parameter dict for ``config``, float32, from an explicit generator."""
    C = config.d_model

    def norm():
        p = {"w": np.ones(C, np.float32)}
        if config.norm == "layernorm":
            p["b"] = np.zeros(C, np.float32)
        return p

    params = {"embed": embedding.init(config, rng), "pos": stage("positional", config).init(config, rng), "blocks": []}
    for i in range(config.n_layers):
        ffn, ffn_config = layer_ffn(config, i)
        params["blocks"].append(
            {"ln1": norm(), "attn": attention_module(config).init(config, rng), "ln2": norm(), "mlp": ffn.init(ffn_config, rng)}
        )
    params["ln_final"] = norm()
    params["unembed"] = output.head_init(config, rng)
    return params


def check_params(params: dict, config: ModelConfig) -> None:
    """Refuse params that do not fit ``config``, names and shapes as `init_params` makes them (the one
    source of truth, at the cost of one throwaway set): another config's params would run and give
    wrong answers without an error (a larger vocabulary, fewer layers)."""
    check_like(params, init_params(config, np.random.default_rng(0)), "params", "params of another config?")


# --------------------------------------------------------------------------- forward and backward
def forward(params: dict, config: ModelConfig, ids, positions: Optional[np.ndarray] = None,
            kv_cache=None, need_cache=None, record: bool = False,
            rng: Optional[np.random.Generator] = None, train: bool = False, hook: Optional[Hook] = None):
    """Run the pipeline: ids (B, T) -> logits (B, T, V), and the cache backward needs.

    Args:
        positions: absolute positions (T,) of the ids; default ``kv_cache.length + arange(T)``
            (so a prefill then single tokens continue where the cache stopped).
        kv_cache: decode incrementally (inference only).
        need_cache: keep activations for backward (None: unless inside ``nn.no_grad``).
        record: also keep activations only inspection needs (pre-softmax scores).
        rng, train: dropout, when ``config.dropout > 0`` and ``train`` is True.
        hook: ``hook(name, array) -> array`` is called at every hook point (names as in
            `trace.hook_table` and ``docs/hooks.md``, e.g. ``blocks.0.attn.hook_z``); what it returns replaces the
            activation. For reading and patching activations at inference (`trace.run_with_hooks`);
            a backward after a hook changed something would not match the forward.
    """
    hook = hook or _no_hook
    keep = nn.want_cache(need_cache) or record
    x, embed_cache = embedding.forward(params["embed"], ids, need_cache=keep)  # checks the ids; (B, T) -> (B, T, C)
    B, T = x.shape[:2]
    if T == 0:
        raise ValueError(f"ids have no tokens (shape {np.shape(ids)}): the model needs at least one token per row; "
                         "start an empty prompt from a token such as <|endoftext|>")
    if B == 0:
        raise ValueError(f"ids have no rows (shape {np.shape(ids)}): give a batch of at least one sequence")
    start = kv_cache.length if kv_cache is not None else 0
    if positions is None:
        positions = np.arange(start, start + T)
    if start + T > config.context_length:
        raise ValueError(f"sequence of {start + T} positions is longer than the context window "
                         f"(context_length={config.context_length}); crop the input to its last "
                         f"{config.context_length} tokens, or use a config with a longer context")
    drop = config.dropout if train else 0.0
    cache: dict = {"blocks": [], "embed": embed_cache}
    positional, attention = stage("positional", config), attention_module(config)  # looked up once per call
    x = hook("hook_embed", x)
    x, cache["pos"] = positional.forward(params["pos"], x, positions, config, need_cache=keep)
    x, cache["embed_drop"] = nn.dropout_forward(x, drop, rng, train)
    for i, p in enumerate(params["blocks"]):
        name = block_hook_names(i)  # name.resid_pre == "blocks.{i}.hook_resid_pre", ...
        x = hook(name.resid_pre, x)
        c: dict = {"hook_resid_pre": x}
        h, c["ln1"] = norm_forward(config, p["ln1"], x)
        c["ln1_out"] = h  # the normalised stream attention reads (gain and bias applied)
        a, c["attn"] = attention.forward(p["attn"], h, config, positions, kv_cache=kv_cache, layer=i,
                                         need_cache=keep, record=record, hook=_prefixed(hook, name.attn),
                                         positional=positional)
        a, c["attn_drop"] = nn.dropout_forward(a, drop, rng, train)
        c["hook_attn_out"] = a = hook(name.attn_out, a)  # what attention adds to the stream
        x = x + a  # (B, T, C): the residual stream after attention
        c["hook_resid_mid"] = x = hook(name.resid_mid, x)
        h, c["ln2"] = norm_forward(config, p["ln2"], x)
        c["ln2_out"] = h
        ffn, ffn_config = layer_ffn(config, i)
        m, c["mlp"] = ffn.forward(p["mlp"], h, ffn_config, need_cache=keep)
        m, c["mlp_drop"] = nn.dropout_forward(m, drop, rng, train)
        c["hook_mlp_out"] = m = hook(name.mlp_out, m)  # what the MLP adds
        x = x + m  # (B, T, C): the residual stream after the block
        c["hook_resid_post"] = x = hook(name.resid_post, x)
        cache["blocks"].append(c)
    h, cache["ln_final"] = norm_forward(config, params["ln_final"], x)
    cache["ln_final_out"] = h  # what the output head reads
    W_E = params["embed"]["W_E"] if config.tie_embeddings else None
    logits, cache["head"] = output.head_forward(params["unembed"], h, W_E=W_E, need_cache=keep)  # (B, T, V)
    logits = hook("hook_logits", logits)
    return logits, (cache if keep else None)


Hook = Callable[[str, np.ndarray], np.ndarray]


def _no_hook(name: str, array: np.ndarray) -> np.ndarray:
    return array


def _no_report(name: str, grad: np.ndarray) -> None:
    return None


def _prefixed(hook: Hook, prefix: str) -> Optional[Hook]:
    """The model's hook as seen from inside one stage, which names its activations without the prefix."""
    if hook is _no_hook:
        return None
    return lambda name, array: hook(prefix + name, array)


def backward(params: dict, config: ModelConfig, cache: dict, dlogits: np.ndarray,
             on_grads: Optional[Callable[[str, dict], None]] = None,
             on_grad: Optional[Callable[[str, np.ndarray], None]] = None) -> dict:
    """Gradients of every parameter, as a nested dict shaped like ``params``.

    Two optional callbacks watch the backward pass, in the order it produces things:

    - ``on_grads(prefix, grads)`` is called as each part's parameter gradients become final:
      ``unembed``, ``ln_final``, ``blocks.L-1`` ... ``blocks.0``, ``pos``, ``embed``. Data-parallel
      training starts sending a layer's gradients while backward works on the layers below it
      (`training.distributed`).
    - ``on_grad(name, grad)`` is called with the gradient of the loss w.r.t. the activations
      ``blocks.{i}.hook_resid_post``, ``hook_mlp_out``, ``hook_resid_mid``, ``hook_attn_out``,
      ``attn.hook_z`` (B, T, H, D), ``hook_resid_pre`` and ``hook_embed`` as the backward passes
      them (for attribution patching, `minitransformer.lab.attribution`). It only reads: the
      gradients it receives must not be written into.
    """
    ready = on_grads or (lambda prefix, g: None)
    report = on_grad or _no_report
    grads: dict = {"blocks": [None] * len(params["blocks"])}
    W_E = params["embed"]["W_E"] if config.tie_embeddings else None
    dx, grads["unembed"] = output.head_backward(params["unembed"], cache["head"], dlogits, W_E=W_E)
    dW_E_head = grads["unembed"].pop("W_E", None)  # tied head: W_E also gets the head's gradient
    ready("unembed", grads["unembed"])
    dx, grads["ln_final"] = norm_backward(config, cache["ln_final"], dx)
    ready("ln_final", grads["ln_final"])
    for i in reversed(range(len(params["blocks"]))):
        p, c, g = params["blocks"][i], cache["blocks"][i], {}
        report(f"blocks.{i}.hook_resid_post", dx)
        report(f"blocks.{i}.hook_mlp_out", dx)  # the residual copies dx to the MLP's output
        dm = nn.dropout_backward(dx, c["mlp_drop"])  # the residual copies dx to both branches
        dh, g["mlp"] = layer_ffn(config, i)[0].require_backward()(p["mlp"], c["mlp"], dm)
        dx_ln2, g["ln2"] = norm_backward(config, c["ln2"], dh)
        dx = dx + dx_ln2
        report(f"blocks.{i}.hook_resid_mid", dx)
        report(f"blocks.{i}.hook_attn_out", dx)
        if on_grad is not None and "W_O" in p["attn"]:  # d hook_z = d attn_out @ W_O.T, per head
            dz = nn.dropout_backward(dx, c["attn_drop"]) @ p["attn"]["W_O"].T  # (B, T, C) -> (B, T, H*D)
            report(f"blocks.{i}.attn.hook_z", dz.reshape(*dz.shape[:2], config.n_heads, -1))  # (B, T, H, D)
        da = nn.dropout_backward(dx, c["attn_drop"])
        dh, g["attn"] = attention_module(config).require_backward()(p["attn"], c["attn"], da)
        dx_ln1, g["ln1"] = norm_backward(config, c["ln1"], dh)
        dx = dx + dx_ln1
        report(f"blocks.{i}.hook_resid_pre", dx)
        grads["blocks"][i] = g
        ready(f"blocks.{i}", g)
    dx = nn.dropout_backward(dx, cache["embed_drop"])
    dx, grads["pos"] = stage("positional", config).require_backward()(params["pos"], cache["pos"], dx)
    ready("pos", grads["pos"])
    report("hook_embed", dx)
    _, grads["embed"] = embedding.backward(params["embed"], cache["embed"], dx)
    if dW_E_head is not None:
        grads["embed"]["W_E"] = grads["embed"]["W_E"] + dW_E_head
    ready("embed", grads["embed"])
    return grads


# --------------------------------------------------------------------------- the model object
class GPT:
    """A GPT-style language model in numpy.

    >>> model = GPT(ModelConfig.preset("toy"), seed=0)
    >>> ids = np.array([[1, 2, 3, 4]])
    >>> model.forward(ids).shape
    (1, 4, 64)
    >>> loss = model.loss(ids[:, :-1], ids[:, 1:])
    >>> grads = model.backward()
    >>> sorted(grads) == sorted(model.params)
    True
    """

    def __init__(self, config: Union[ModelConfig, str], seed: Union[int, np.random.Generator] = 0,
                 params: Optional[dict] = None, threads: Optional[int] = None):
        self.config = ModelConfig.preset(config) if isinstance(config, str) else config
        if not isinstance(self.config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig or a preset name, got {type(config).__name__}; for a dict "
                            "use ModelConfig.from_dict(...)")
        # `loss`/`backward` split the batch over this many threads, one per core by default (core/cores.py);
        # threads=1 is the plain one-thread loop
        self.threads = cores.resolve(threads)
        keep_freed_memory()  # reuse freed numpy temporaries instead of fresh pages (see core/memory.py)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        if params is not None:
            check_params(params, self.config)
        self.params = params if params is not None else init_params(self.config, rng)
        self._last = None  # (cache, loss cache) of the last `loss` call, for `backward`
        self.last_expert_load: list = []  # MoE: per block, tokens per expert in the last `loss` (None: dense)

    # ---------------------------------------------------------------- running
    def forward(self, ids, **kwargs) -> np.ndarray:
        """Logits (B, T, V) for ids (B, T); keeps nothing (inference)."""
        return forward(self.params, self.config, ids, need_cache=False, **kwargs)[0]

    __call__ = forward

    def loss(self, ids, targets, ignore_index: int = -100, rng: Optional[np.random.Generator] = None,
             train: bool = False) -> float:
        """Mean cross-entropy of ``targets`` (B, T) given ``ids`` (B, T); remembers what `backward` needs.

        With ``threads > 1`` the batch is cut into shards of whole sequences that run side by side
        (`core.cores`); the loss is the same mean over every target. Targets equal to ``ignore_index``
        (padding) are left out; if every one is, the loss is 0.0 and the gradients are zero (a
        data-parallel rank whose rows are all padding adds nothing).
        """
        targets = np.asarray(targets)
        if targets.shape != np.shape(ids):
            raise ValueError(f"targets have shape {targets.shape} but ids have {np.shape(ids)}; they must match")
        ids = np.asarray(ids)
        one = ids.ndim < 2 or self.threads == 1 or getattr(self.config, "balance_loss", 0) > 0  # (a per-batch mean)
        shards = [slice(None)] if one else cores.shard_slices(len(ids), self.threads, ids.shape[1] * self.config.d_model)
        rngs = [rng] * len(shards)
        if len(shards) > 1 and rng is not None and train and self.config.dropout > 0:  # one stream per shard,
            rngs = [np.random.default_rng(seed) for seed in rng.integers(2 ** 63, size=len(shards))]  # from rng

        def shard_loss(job):  # forward and loss of one shard
            sl, shard_rng = job
            logits, cache = forward(self.params, self.config, ids[sl], need_cache=True, rng=shard_rng, train=train)
            return cache, nn.cross_entropy_forward(logits, targets[sl], ignore_index)

        with nn.lean_caches():  # keep only what backward needs (attention recomputes its pattern)
            parts = cores.run(shard_loss, list(zip(shards, rngs)), self.threads)
        counts = [float(np.count_nonzero(targets[sl] != ignore_index)) for sl in shards]  # kept targets per shard
        total = max(sum(counts), 1.0)
        self._last = [(cache, lc, n / total) for (cache, (_, lc)), n in zip(parts, counts)]
        loads = [moe.expert_loads(cache) for cache, _ in parts]  # MoE: tokens per expert and block
        self.last_expert_load = [None if ls[0] is None else sum(ls) for ls in zip(*loads)]
        if len(parts) == 1:
            return parts[0][1][0]
        return sum(loss * n for (_, (loss, _)), n in zip(parts, counts)) / total

    def backward(self, on_grads: Optional[Callable[[str, dict], None]] = None) -> dict:
        """Gradients of the last `loss` w.r.t. every parameter (nested like ``params``).

        ``on_grads(prefix, grads)`` is told as each part's gradients are ready (see `backward`;
        with shards, once they are summed).
        """
        if self._last is None:
            raise ValueError("call model.loss(ids, targets) before model.backward()")
        parts, self._last = self._last, None  # free the activations as we go
        report = on_grads if len(parts) == 1 else None  # with shards: once they are summed, below

        def shard_backward(part):
            cache, loss_cache, weight = part
            # the gradient overwrites the loss's (B, T, V) exponentials: no second logits-sized array
            dlogits = nn.cross_entropy_backward(loss_cache, dloss=weight, overwrite=True)
            return backward(self.params, self.config, cache, dlogits, on_grads=report)

        shard_grads = cores.run(shard_backward, parts, self.threads)
        del parts
        if len(shard_grads) == 1:
            return shard_grads[0]
        grads = add_trees(shard_grads)
        if on_grads is not None:  # in the order `backward` reports: head first, embedding last
            blocks = [(f"blocks.{i}", grads["blocks"][i]) for i in reversed(range(len(grads["blocks"])))]
            for name, g in [("unembed", grads["unembed"]), ("ln_final", grads["ln_final"]), *blocks,
                            ("pos", grads["pos"]), ("embed", grads["embed"])]:
                on_grads(name, g)
        return grads

    # ---------------------------------------------------------------- seeing inside
    def run_forward(self, ids, need_cache=None, record: bool = False, hook: Optional[Hook] = None):
        """``(logits, cache)`` of `forward` on this model's parameters (what the trace reads)."""
        return forward(self.params, self.config, ids, need_cache=need_cache, record=record, hook=hook)

    def run_with_cache(self, ids, names_filter=None):
        """``(logits, ActivationCache)``: every activation under its published name (see `trace.cache`)."""
        return run_with_cache(self, ids, names_filter)

    def run_with_hooks(self, ids, hooks: dict) -> np.ndarray:
        """Logits of a run in which ``hooks = {name: fn}`` read or replace activations (see `trace.cache`)."""
        return run_with_hooks(self, ids, hooks)

    # ---------------------------------------------------------------- parameters
    def parameters(self) -> dict:
        """The nested parameter dict itself (not a copy)."""
        return self.params

    def named_parameters(self) -> dict[str, np.ndarray]:
        """``{"blocks.0.attn.W_Q": array, ...}``."""
        return flatten(self.params)

    @property
    def num_params(self) -> int:
        """Every stored number (with a mixture of experts: all experts, and the router biases)."""
        return sum(a.size for a in flatten(self.params).values())

    @property
    def num_active_params(self) -> int:
        """Parameters used for each token: `num_params` minus the routed experts a token skips (MoE)."""
        return self.num_params - moe.inactive_params_per_token(self.config)

    # ---------------------------------------------------------------- generation
    def new_kv_cache(self, batch_size: int = 1, max_len: Optional[int] = None):
        """An empty KV cache for this model's attention variant (see `new_kv_cache`)."""
        return new_kv_cache(self.config, batch_size=batch_size, max_len=max_len)

    def generate(self, prompt_ids, max_new_tokens: int, temperature: float = 1.0, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, seed: Union[int, np.random.Generator, None] = 0,
                 use_cache: bool = True, crop: bool = False) -> np.ndarray:
        """Continue ``prompt_ids`` (B, T) by ``max_new_tokens`` tokens: (B, T + max_new_tokens) (`generation`)."""
        return generation.generate(self, prompt_ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                   top_p=top_p, seed=seed, use_cache=use_cache, crop=crop)

    def __repr__(self) -> str:
        c = self.config
        return (f"GPT({self.num_params:,} parameters: {c.n_layers} layers, d_model={c.d_model}, {c.n_heads} heads, "
                f"vocab {c.vocab_size}, context {c.context_length}, {c.positional} positions, {c.ffn} MLP, {c.norm})")
