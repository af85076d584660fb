"""Multi-Head Latent Attention: the checks T1-T12 of docs/mla.md, gradients, the model, and accounting.

float64 and small sizes (d=64, H=4, Dh=16, Dr=8, Dc=24, Dq=32) unless a test says otherwise.
"""

import doctest
import importlib
import math

import numpy as np
import pytest

from minitransformer.core import registry
from minitransformer import positional
from minitransformer.attention import mha
from minitransformer.attention import mla
from minitransformer.interop import mla_layout
from minitransformer.attention import mla_accounting
from minitransformer.core import nn
from minitransformer import model as model_mod
from minitransformer.core.config import ModelConfig
from minitransformer.attention.mla_accounting import DEEPSEEK_V2, DEEPSEEK_V2_LITE, DEEPSEEK_V3, LLAMA31_405B, QWEN25_72B, AttentionSizes
from minitransformer.model import GPT
from minitransformer.kit import gradcheck, gradcheck_model

BASE = dict(vocab_size=32, context_length=24, d_model=64, n_layers=1, n_heads=4, attention="mla", d_latent=24,
            positional="rope", d_rope=8, d_latent_q=32)
# (name, overrides): with/without query compression, norms on/off, d_R = 0, one head, interleaved RoPE
SETTINGS = [
    ("q-compressed", {}),
    ("no-q-compression", dict(d_latent_q=None)),
    ("norms-off", dict(latent_norm=False)),
    ("no-q-compression-norms-off", dict(d_latent_q=0, latent_norm=False)),
    ("no-rope", dict(positional="none", d_rope=None)),
    ("learned-positions-no-rope", dict(positional="learned", d_rope=0)),
    ("one-head", dict(n_heads=1, d_model=16)),
    ("interleaved", dict(rope_style="interleaved", softmax_scale_mult=1.7)),
]
IDS = [s[0] for s in SETTINGS]


def config(**kw):
    return ModelConfig(**{**BASE, **kw})


def f64_params(cfg, seed=0, noise=0.3):
    """Float64 weights moved away from the init (norm gains not all one), so every array matters."""
    rng = np.random.default_rng(seed)
    p = mla.init(cfg, rng)
    return {k: v.astype(np.float64) + rng.normal(0, noise, v.shape) for k, v in p.items()}


def definition(params, x, cfg, positions):
    """The equations of DeepSeek-V2 §2.1, one head and one query position at a time: nothing clever."""
    H, Dh, Dv, Dc, Dq, Dr = mla.dims(cfg)
    B, T, C = x.shape
    eps = cfg.norm_eps

    def norm(a, name):
        return a / np.sqrt((a * a).mean(-1, keepdims=True) + eps) * params[name] if cfg.latent_norm else a

    def rope(a):  # a (T, Dr) at `positions`
        if not Dr:
            return a
        cos, sin = positional.rope_angles(positions, Dr, cfg.rope_base)
        return positional.rope_apply(a, cos, sin, cfg.rope_style)

    scale = cfg.softmax_scale_mult / math.sqrt(Dh + Dr)
    out = np.zeros((B, T, H * Dv))
    for b in range(B):
        c_kv = norm(x[b] @ params["W_DKV"], "kv_norm")  # (T, Dc)
        k_r = rope(x[b] @ params["W_KR"]) if Dr else np.zeros((T, 0))  # (T, Dr), shared by all heads
        if Dq:
            c_q = norm(x[b] @ params["W_DQ"], "q_norm")
            q_c_all = c_q @ params["W_UQ"]
            q_r_all = c_q @ params["W_QR"] if Dr else np.zeros((T, 0))
        else:
            q_c_all, q_r_all = x[b] @ params["W_Q"][:, :H * Dh], x[b] @ params["W_Q"][:, H * Dh:]
        for i in range(H):
            k_c = c_kv @ params["W_UK"][:, i * Dh:(i + 1) * Dh]  # (T, Dh)
            v = c_kv @ params["W_UV"][:, i * Dv:(i + 1) * Dv]  # (T, Dv)
            q_c = q_c_all[:, i * Dh:(i + 1) * Dh]
            q_r = rope(q_r_all[:, i * Dr:(i + 1) * Dr])
            for t in range(T):
                s = scale * (k_c[:t + 1] @ q_c[t] + k_r[:t + 1] @ q_r[t])
                out[b, t, i * Dv:(i + 1) * Dv] = nn.softmax(s) @ v[:t + 1]
    return out @ params["W_O"]


# --------------------------------------------------------------------------- docstrings
@pytest.mark.parametrize("name", ["minitransformer.attention.mla", "minitransformer.attention.mla_accounting",
                                  "minitransformer.figures.mla"])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


# --------------------------------------------------------------------------- config
@pytest.mark.parametrize("kw, message", [
    (dict(attention="mha", d_latent=8), "d_latent=8 is a Multi-Head Latent Attention size; it needs attention='mla'"),
    (dict(d_rope=6, positional="none"), "d_rope=6 is the decoupled RoPE channel and needs a rotary positional variant"),
    (dict(d_rope=5), "d_rope=5 must be even"),
    (dict(d_rope=0), "positional='rope' with attention='mla' needs d_rope > 0"),
    (dict(d_latent=0), "d_latent=0 must be a positive int"),
    (dict(d_latent_q=-3), "d_latent_q=-3 must be a positive int, or 0/None"),
    (dict(n_kv_heads=2), "n_kv_heads=2 does not apply to attention='mla'"),
    (dict(latent_norm="yes"), "latent_norm='yes' must be True or False"),
    (dict(softmax_scale_mult=0.0), "softmax_scale_mult=0.0 must be a positive number"),
    (dict(attention="gqa"), "attention='gqa' is not valid; choose one of 'mha', 'mla'"),
])
def test_invalid_mla_configs_say_what_is_valid(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        config(**kw)


def test_mla_config_defaults_and_json_round_trip():
    cfg = ModelConfig.preset("tiny", attention="mla", positional="rope")
    assert (cfg.latent_dim, cfg.latent_q_dim, cfg.rope_dim, cfg.latent_norm) == (128, 0, 16, True)  # 4·Dh, Dh/2
    assert ModelConfig.preset("tiny", attention="mla").rope_dim == 0
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert ModelConfig.from_dict({k: v for k, v in ModelConfig().to_dict().items() if k != "d_latent"}) == ModelConfig()
    with pytest.raises(ValueError, match="needs a config with attention='mla'"):
        mla.init(ModelConfig(), np.random.default_rng(0))


# --------------------------------------------------------------------------- T1 shapes and parameters
@pytest.mark.parametrize("name, kw", SETTINGS, ids=IDS)
def test_T1_parameter_count_equals_the_formula(name, kw):
    cfg = config(**kw)
    params = mla.init(cfg, np.random.default_rng(0))
    sizes = AttentionSizes.from_config(cfg)
    assert sum(a.size for a in params.values()) == mla_accounting.mla_params_per_layer(sizes, norms=cfg.latent_norm)
    shapes = mla_accounting.mla_param_shapes(sizes, norms=cfg.latent_norm)
    assert {k: v.shape for k, v in params.items()} == shapes
    assert all(a.dtype == np.float32 for a in params.values())


def test_T1_deepseek_v3_parameters_per_layer():
    assert mla_accounting.mla_params_per_layer(DEEPSEEK_V3) == 187_107_328
    assert sum(math.prod(s) for s in mla_accounting.mla_param_shapes(DEEPSEEK_V3).values()) == 187_107_328
    # V2-Lite has no query compression: W_Q is C x H(Dh + Dr)
    assert "W_Q" in mla_accounting.mla_param_shapes(DEEPSEEK_V2_LITE)
    assert mla_accounting.mla_params_per_layer(DEEPSEEK_V2_LITE) == (2048 * 16 * 192 + 2048 * 576 + 512
                                                                      + 512 * 16 * 256 + 16 * 128 * 2048)


# --------------------------------------------------------------------------- T2 absorbed == naive == definition
@pytest.mark.parametrize("name, kw", SETTINGS, ids=IDS)
@pytest.mark.parametrize("T", [1, 7])
def test_T2_absorbed_equals_naive_equals_the_definition(name, kw, T):
    cfg = config(**kw)
    params = f64_params(cfg)
    x = np.random.default_rng(1).normal(size=(2, T, cfg.d_model))
    pos = np.arange(T)
    naive, c1 = mla.forward(params, x, cfg, pos, impl="naive", need_cache=True, positional=registry.chosen("positional", cfg))
    absorbed, c2 = mla.forward(params, x, cfg, pos, impl="absorbed", need_cache=True, positional=registry.chosen("positional", cfg))
    assert c1["impl"] == "naive" and c2["impl"] == "absorbed"
    assert np.abs(naive - absorbed).max() < 1e-10
    assert np.abs(naive - definition(params, x, cfg, pos)).max() < 1e-10
    assert np.allclose(c1["hook_pattern"], c2["hook_pattern"], atol=1e-12)


def test_absorbed_float32_in_float32_out():
    cfg = config()
    params = mla.init(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(1, 5, 64)).astype(np.float32)
    for impl in mla.IMPLS:
        y, cache = mla.forward(params, x, cfg, np.arange(5), impl=impl, need_cache=False, positional=registry.chosen("positional", cfg))
        assert y.dtype == np.float32 and cache is None


# --------------------------------------------------------------------------- T3 cached decoding
@pytest.mark.parametrize("name, kw", SETTINGS, ids=IDS)
@pytest.mark.parametrize("impl", [None, "naive", "absorbed"])
def test_T3_incremental_decoding_equals_the_full_forward(name, kw, impl):
    cfg = config(**kw)
    params = f64_params(cfg)
    x = np.random.default_rng(2).normal(size=(2, 13, cfg.d_model))
    full, full_cache = mla.forward(params, x, cfg, np.arange(13), need_cache=True, positional=registry.chosen("positional", cfg))
    cache = mla.LatentKVCache.for_config(cfg, batch_size=2, dtype=np.float64)
    pieces, start = [], 0
    for size in (4, 1, 1, 3, 1, 2, 1):  # a prefill of 4, single tokens, and chunks (start_pos > 0)
        pos = np.arange(start, start + size)
        pieces.append(mla.forward(params, x[:, start:start + size], cfg, pos, kv_cache=cache, impl=impl, positional=registry.chosen("positional", cfg))[0])
        start += size
    assert start == 13 and cache.length == 13
    assert np.abs(np.concatenate(pieces, axis=1) - full).max() < 1e-10
    # the cache holds exactly the latents and rotated shared keys of one full pass
    assert np.allclose(cache.c_kv(0), full_cache["hook_latent"], atol=1e-13, rtol=0)
    assert np.allclose(cache.k_r(0), full_cache["hook_rot_k"], atol=1e-13, rtol=0)


def test_T3_automatic_impl_absorbs_only_when_decoding():
    cfg = config()
    params = f64_params(cfg)
    x = np.random.default_rng(3).normal(size=(1, 6, 64))
    cache = mla.LatentKVCache.for_config(cfg, dtype=np.float64)
    _, c = mla.forward(params, x[:, :4], cfg, np.arange(4), kv_cache=cache, need_cache=True, positional=registry.chosen("positional", cfg))
    assert c["impl"] == "naive"  # prefill: as many queries as keys
    _, c = mla.forward(params, x[:, 4:5], cfg, np.arange(4, 5), kv_cache=cache, need_cache=True, positional=registry.chosen("positional", cfg))
    assert c["impl"] == "absorbed" and c["hook_q_latent"].shape == (1, 4, 1, 24)
    assert c["hook_pattern"].shape == (1, 4, 1, 5) and c["hook_z_latent"].shape == (1, 4, 1, 24)


# --------------------------------------------------------------------------- T4 cache size
def test_T4_latent_cache_holds_T_times_dc_plus_dr_numbers_per_layer():
    cfg = config(n_layers=3)
    cache = mla.LatentKVCache.for_config(cfg, batch_size=2)
    params = mla.init(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(2, 5, 64)).astype(np.float32)
    for layer in range(3):
        mla.forward(params, x, cfg, np.arange(5), kv_cache=cache, layer=layer, positional=registry.chosen("positional", cfg))
    assert cache.numbers_per_token == 24 + 8
    assert cache.nbytes == 3 * 2 * 5 * (24 + 8) * 4  # layers * batch * tokens * (Dc + Dr) * float32
    assert cache.capacity_nbytes == 3 * 2 * 24 * 32 * 4
    assert cache.c_kv(2).shape == (2, 5, 24) and cache.k_r(2).shape == (2, 5, 8)
    p_mha = mha.KVCache.for_config(ModelConfig(**{**BASE, "attention": "mha", "d_latent": None, "d_rope": None,
                                                      "d_latent_q": None, "n_layers": 3}), batch_size=2)
    for layer in range(3):
        p_mha.append(layer, np.zeros((2, 4, 5, 16)), np.zeros((2, 4, 5, 16)))
    assert p_mha.nbytes / cache.nbytes == (2 * 4 * 16) / (24 + 8)
    assert "LatentKVCache(layers=3, batch=2, d_latent=24, d_rope=8, length=5/24" in repr(cache)
    cache.reset()
    assert cache.length == 0 and cache.nbytes == 0


def test_T4_cache_formulas_and_the_published_numbers():
    for sizes in (DEEPSEEK_V2, DEEPSEEK_V3):
        assert mla_accounting.kv_elements_per_token_layer(sizes, "mla") == 576 == 4.5 * sizes.d_head
        assert mla_accounting.equivalent_gqa_groups(sizes) == 2.25
        assert mla_accounting.kv_elements_per_token_layer(sizes, "mha") == 32_768
        assert mla_accounting.kv_elements_per_token_layer(sizes, "gqa", n_groups=8) == 2_048
        assert mla_accounting.kv_elements_per_token_layer(sizes, "mqa") == 256
    assert mla_accounting.kv_elements_per_token_layer(DEEPSEEK_V3, "mla") * 61 == 35_136
    assert mla_accounting.kv_bytes_per_token(DEEPSEEK_V3, "mla") == 70_272  # BF16 over 61 layers (ISCA Table 1)
    assert mla_accounting.kv_bytes_per_token(DEEPSEEK_V2, "mla") == 69_120
    assert mla_accounting.kv_elements_per_token_layer(DEEPSEEK_V3, "mha") * 61 == 1_998_848
    assert mla_accounting.kv_bytes_per_token(QWEN25_72B, "gqa") == 327_680
    assert mla_accounting.kv_bytes_per_token(LLAMA31_405B, "gqa") == 516_096
    rows = {r["mechanism"]: r for r in mla_accounting.kv_cache_table(DEEPSEEK_V3)}
    assert rows["MLA"]["bytes_per_token"] == 70_272 and rows["MLA"]["in_d_head"] == 4.5
    assert rows["MHA"]["times_mla"] == 32_768 / 576
    with pytest.raises(ValueError, match="mechanism='mqa2' is not valid"):
        mla_accounting.kv_elements_per_token_layer(DEEPSEEK_V3, "mqa2")


# --------------------------------------------------------------------------- T5 RoPE relativity
@pytest.mark.parametrize("impl", ["naive", "absorbed"])
def test_T5_shifting_every_position_changes_nothing(impl):
    cfg = config(context_length=200)
    params = f64_params(cfg)
    x = np.random.default_rng(4).normal(size=(2, 9, 64))
    y0, _ = mla.forward(params, x, cfg, np.arange(9), impl=impl, positional=registry.chosen("positional", cfg))
    y1, _ = mla.forward(params, x, cfg, 137 + np.arange(9), impl=impl, positional=registry.chosen("positional", cfg))
    # note: positional.rope_angles rounds cos/sin to float32, so rotations at positions 0..8 and
    # 137..145 differ by float32 rounding (~1e-7), whatever the dtype of x: hence 1e-5, not 1e-10
    assert np.abs(y0 - y1).max() < 1e-5
    # and through a cache that starts at position 100 (prefill 5, then decode)
    cache = mla.LatentKVCache.for_config(cfg, batch_size=2, dtype=np.float64)
    a = mla.forward(params, x[:, :5], cfg, 100 + np.arange(5), kv_cache=cache, impl=impl, positional=registry.chosen("positional", cfg))[0]
    b = [mla.forward(params, x[:, t:t + 1], cfg, np.array([100 + t]), kv_cache=cache, impl=impl, positional=registry.chosen("positional", cfg))[0]
         for t in range(5, 9)]
    assert np.abs(np.concatenate([a] + b, axis=1) - y0).max() < 1e-5
    # a real position signal is there: a different *gap* changes the output
    x2 = x.copy()
    x2[:, [3, 4]] = x2[:, [4, 3]]
    assert not np.allclose(mla.forward(params, x2, cfg, np.arange(9), impl=impl, positional=registry.chosen("positional", cfg))[0][:, 5:], y0[:, 5:])


# --------------------------------------------------------------------------- T6 causality
@pytest.mark.parametrize("name, kw", SETTINGS, ids=IDS)
@pytest.mark.parametrize("impl", ["naive", "absorbed"])
def test_T6_future_tokens_never_change_the_past(name, kw, impl):
    cfg = config(**kw)
    params = mla.init(cfg, np.random.default_rng(5))
    rng = np.random.default_rng(6)
    x = rng.normal(size=(1, 8, cfg.d_model)).astype(np.float32)
    x2 = x.copy()
    x2[:, 5:] = rng.normal(size=(1, 3, cfg.d_model))
    y1, _ = mla.forward(params, x, cfg, np.arange(8), impl=impl, positional=registry.chosen("positional", cfg))
    y2, _ = mla.forward(params, x2, cfg, np.arange(8), impl=impl, positional=registry.chosen("positional", cfg))
    assert np.array_equal(y1[:, :5], y2[:, :5]) and not np.allclose(y1[:, 5:], y2[:, 5:])


# --------------------------------------------------------------------------- T7 reduction to MHA
def _mha_pair(latent_norm):
    mla_cfg = config(d_latent=64, d_latent_q=None, positional="none", d_rope=None, latent_norm=latent_norm)
    mha_cfg = ModelConfig(d_model=64, n_heads=4, n_layers=1, positional="none", bias=False)
    rng = np.random.default_rng(7)
    p_mha = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in mha.init(mha_cfg, rng).items()}
    # case 1 of "When MLA is multi-head attention" in docs/mla.md, the constructive choice:
    # d_c = d, W_DKV = I, W_UK = W_K, W_UV = W_V, W_Q directly
    p_mla = {"W_Q": p_mha["W_Q"], "W_DKV": np.eye(64), "W_UK": p_mha["W_K"], "W_UV": p_mha["W_V"], "W_O": p_mha["W_O"]}
    if latent_norm:
        p_mla["kv_norm"] = np.ones(64)
    return mla_cfg, p_mla, mha_cfg, p_mha


def test_T7_mla_without_rope_and_norms_is_exactly_mha():
    mla_cfg, p_mla, mha_cfg, p_mha = _mha_pair(latent_norm=False)
    x = np.random.default_rng(8).normal(size=(2, 7, 64))
    ref = mha.forward(p_mha, x, mha_cfg, np.arange(7), positional=registry.chosen("positional", mha_cfg))[0]
    for impl in mla.IMPLS:
        assert np.abs(mla.forward(p_mla, x, mla_cfg, np.arange(7), impl=impl, positional=registry.chosen("positional", mla_cfg))[0] - ref).max() < 1e-12


def test_T7_every_mla_without_rope_and_norms_is_the_mha_of_the_products():
    cfg = config(positional="none", d_rope=None, latent_norm=False)  # d_c = 24 < d: a rank-24 MHA
    p = f64_params(cfg)
    mha_cfg = ModelConfig(d_model=64, n_heads=4, n_layers=1, positional="none", bias=False)
    p_mha = {"W_Q": p["W_DQ"] @ p["W_UQ"], "W_K": p["W_DKV"] @ p["W_UK"], "W_V": p["W_DKV"] @ p["W_UV"], "W_O": p["W_O"]}
    assert np.linalg.matrix_rank(np.concatenate([p_mha["W_K"], p_mha["W_V"]], axis=1)) <= 24
    x = np.random.default_rng(9).normal(size=(2, 7, 64))
    assert np.abs(mla.forward(p, x, cfg, np.arange(7), positional=registry.chosen("positional", cfg))[0]
                  - mha.forward(p_mha, x, mha_cfg, np.arange(7), positional=registry.chosen("positional", mha_cfg))[0]).max() < 1e-12


def test_T7_negative_control_the_latent_norm_breaks_the_equivalence():
    mla_cfg, p_mla, mha_cfg, p_mha = _mha_pair(latent_norm=True)
    x = np.random.default_rng(8).normal(size=(2, 7, 64)) * 3.0  # the attention input is not unit-RMS
    ref = mha.forward(p_mha, x, mha_cfg, np.arange(7), positional=registry.chosen("positional", mha_cfg))[0]
    assert np.abs(mla.forward(p_mla, x, mla_cfg, np.arange(7), positional=registry.chosen("positional", mla_cfg))[0] - ref).max() > 1e-2
    # ...and it is restored when the MHA reference reads RMSNorm(x) for its keys and values
    xn = x / np.sqrt((x * x).mean(-1, keepdims=True) + mla_cfg.norm_eps)
    H, D = 4, 16
    q = (x @ p_mha["W_Q"]).reshape(2, 7, H, D).transpose(0, 2, 1, 3)
    k = (xn @ p_mha["W_K"]).reshape(2, 7, H, D).transpose(0, 2, 1, 3)
    v = (xn @ p_mha["W_V"]).reshape(2, 7, H, D).transpose(0, 2, 1, 3)
    s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(D) + np.triu(np.full((7, 7), -np.inf), 1)
    z = (nn.softmax(s) @ v).transpose(0, 2, 1, 3).reshape(2, 7, H * D)
    assert np.abs(mla.forward(p_mla, x, mla_cfg, np.arange(7), positional=registry.chosen("positional", mla_cfg))[0] - z @ p_mha["W_O"]).max() < 1e-12


# --------------------------------------------------------------------------- T8 reduction to RoPE-MQA
@pytest.mark.parametrize("rope_style", ["half", "interleaved"])
def test_T8_mla_contains_rope_mqa(rope_style):
    C, H, D = 64, 4, 16
    mqa_cfg = ModelConfig(d_model=C, n_heads=H, n_kv_heads=1, n_layers=1, positional="rope", rope_style=rope_style,
                          bias=False)
    # case 3 of "When MLA is multi-head attention" in docs/mla.md: W_UK = 0, d_R = d_c = d_v = d_h,
    # W_UV,i = I, W_DKV = the MQA value map, W_KR its key map;
    # the MLA scale 1/sqrt(Dh + Dr) = 1/sqrt(2D) is brought to MQA's 1/sqrt(D) by the multiplier hook
    mla_cfg = config(d_latent=D, d_latent_q=None, d_rope=D, latent_norm=False, rope_style=rope_style,
                     softmax_scale_mult=math.sqrt(2.0))
    rng = np.random.default_rng(10)
    mqa = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in mha.init(mqa_cfg, rng).items()}
    p_mla = {"W_Q": np.concatenate([np.zeros((C, H * D)), mqa["W_Q"]], axis=1), "W_DKV": mqa["W_V"],
           "W_KR": mqa["W_K"], "W_UK": np.zeros((D, H * D)), "W_UV": np.tile(np.eye(D), (1, H)), "W_O": mqa["W_O"]}
    x = rng.normal(size=(2, 9, C))
    pos = np.arange(9)
    ref = mha.forward(mqa, x, mqa_cfg, pos, positional=registry.chosen("positional", mqa_cfg))[0]
    for impl in mla.IMPLS:
        assert np.abs(mla.forward(p_mla, x, mla_cfg, pos, impl=impl, positional=registry.chosen("positional", mla_cfg))[0] - ref).max() < 1e-12


# --------------------------------------------------------------------------- T9 the scale
@pytest.mark.parametrize("impl", ["naive", "absorbed"])
def test_T9_scale_is_one_over_sqrt_dh_plus_dr_and_the_multiplier_scales_q(impl):
    cfg = config(d_latent_q=None)
    assert mla.softmax_scale(cfg) == 1 / math.sqrt(16 + 8)
    assert ModelConfig().softmax_scale_mult == 1.0  # the YaRN hook is off by default
    p = f64_params(cfg)
    x = np.random.default_rng(11).normal(size=(1, 6, 64))
    _, c = mla.forward(p, x, cfg, np.arange(6), impl=impl, record=True, positional=registry.chosen("positional", cfg))
    q_c, q_r, k_r = c["hook_q"], c["hook_rot_q"], c["hook_rot_k"]
    k_c = (c["hook_latent"] @ p["W_UK"]).reshape(1, 6, 4, 16).transpose(0, 2, 1, 3)
    raw = q_c @ k_c.transpose(0, 1, 3, 2) + q_r @ k_r.transpose(0, 2, 1)[:, None]  # (B, H, T, S)
    lower = np.tril(np.ones((6, 6), bool))
    assert np.allclose(c["hook_attn_scores"][..., lower], raw[..., lower] / math.sqrt(24), atol=1e-12)
    m = 1.9
    scaled = mla.forward(p, x, cfg.replace(softmax_scale_mult=m), np.arange(6), impl=impl, positional=registry.chosen("positional", cfg.replace(softmax_scale_mult=m)))[0]
    q_times_m = mla.forward(dict(p, W_Q=p["W_Q"] * m), x, cfg, np.arange(6), impl=impl, positional=registry.chosen("positional", cfg))[0]
    assert np.abs(scaled - q_times_m).max() < 1e-12


# --------------------------------------------------------------------------- T10 gradients
@pytest.mark.parametrize("name, kw", SETTINGS, ids=IDS)
def test_T10_backward_gradcheck_every_weight_and_both_norm_gains(name, kw):
    cfg = config(**kw)
    params = f64_params(cfg, seed=12)
    rng = np.random.default_rng(13)
    x = rng.normal(size=(2, 5, cfg.d_model))
    pos = np.arange(5)
    y, cache = mla.forward(params, x, cfg, pos, need_cache=True, positional=registry.chosen("positional", cfg))
    dy = rng.normal(size=y.shape)
    dx, grads = mla.backward(params, cache, dy)
    assert set(grads) == set(params)
    if cfg.latent_norm and cfg.latent_q_dim:
        assert {"q_norm", "kv_norm"} <= set(grads)
    report = gradcheck(lambda a: mla.forward({k: a[k] for k in params}, a["x"], cfg, pos, positional=registry.chosen("positional", cfg))[0],
                       {"x": x, **params}, {"x": dx, **grads}, dy)
    assert report.ok, str(report)


def test_backward_refuses_a_cached_or_absorbed_forward():
    cfg = config()
    params = mla.init(cfg, np.random.default_rng(0))
    x = np.ones((1, 2, 64), np.float32)
    cache = mla.LatentKVCache.for_config(cfg)
    _, c = mla.forward(params, x, cfg, np.arange(2), kv_cache=cache, need_cache=True, positional=registry.chosen("positional", cfg))
    with pytest.raises(ValueError, match="latent cache"):
        mla.backward(params, c, np.ones_like(x))
    _, c = mla.forward(params, x, cfg, np.arange(2), impl="absorbed", need_cache=True, positional=registry.chosen("positional", cfg))
    with pytest.raises(ValueError, match="naive path only"):
        mla.backward(params, c, np.ones_like(x))
    with pytest.raises(ValueError, match="impl='fast' is not valid; choose one of 'naive', 'absorbed'"):
        mla.forward(params, x, cfg, np.arange(2), impl="fast", positional=registry.chosen("positional", cfg))
    with pytest.raises(ValueError, match="positions must be consecutive"):
        mla.forward(params, x, cfg, np.array([0, 2]), positional=registry.chosen("positional", cfg))
    with pytest.raises(ValueError, match=r"x must be an array of shape \(B, T, C\) with C = d_model = 64"):
        mla.forward(params, np.ones((1, 2, 8), np.float32), cfg, np.arange(2), positional=registry.chosen("positional", cfg))
    with pytest.raises(ValueError, match=r"with batch B = 1; got \(2, 2, 24\)"):
        mla.forward(params, np.ones((2, 2, 64), np.float32), cfg, np.arange(2),
                              kv_cache=mla.LatentKVCache.for_config(cfg), positional=registry.chosen("positional", cfg))
    small = mla.LatentKVCache(1, 1, 3, 24, 8)
    small.append(0, np.zeros((1, 2, 24)), np.zeros((1, 2, 8)))
    with pytest.raises(ValueError, match="holds 3 positions and 2 are used: 2 more do not fit"):
        small.append(0, np.zeros((1, 2, 24)), np.zeros((1, 2, 8)))


# --------------------------------------------------------------------------- T11 cost counters
@pytest.mark.parametrize("sizes", [DEEPSEEK_V3, DEEPSEEK_V2_LITE, AttentionSizes.from_config(config())],
                         ids=lambda s: s.name)
def test_T11_mac_counters_equal_the_formulas(sizes):
    H, Dh, Dv, Dc, Dr = sizes.n_heads, sizes.d_head, sizes.d_v, sizes.d_latent, sizes.d_rope
    absorbed = mla_accounting.decode_macs(sizes, 1000, "absorbed")
    naive_kv = mla_accounting.decode_macs(sizes, 1000, "naive_kv")
    reproject = mla_accounting.decode_macs(sizes, 1000, "naive_reproject")
    assert absorbed["per_cached_token"] == H * (2 * Dc + Dr)
    assert naive_kv["per_cached_token"] == H * (Dh + Dr + Dv)
    assert reproject["per_cached_token"] == H * Dc * (Dh + Dv) + H * (Dh + Dr + Dv)
    assert absorbed["fixed"] == H * Dh * Dc + H * Dc * Dv == naive_kv["fixed"] and reproject["fixed"] == 0
    for d in (absorbed, naive_kv, reproject):
        assert d["total"] == d["fixed"] + 1000 * d["per_cached_token"]
    # cache elements read per cached token, in the ratio (Dc + Dr) : H(Dh + Dr + Dv)
    assert absorbed["cache_elements_read_per_token"] * H * (Dh + Dr + Dv) == \
        naive_kv["cache_elements_read_per_token"] * (Dc + Dr)


def test_T11_deepseek_v3_decode_costs():
    v3 = DEEPSEEK_V3
    assert mla_accounting.decode_macs(v3, 1, "absorbed")["per_cached_token"] == 139_264
    assert mla_accounting.decode_macs(v3, 1, "naive_kv")["per_cached_token"] == 40_960
    assert mla_accounting.decode_macs(v3, 1, "absorbed")["fixed"] == 16_777_216
    assert mla_accounting.decode_macs(v3, 1, "naive_reproject")["per_cached_token"] == 2 * 128 * 128 * 512 + 40_960
    assert mla_accounting.einsum_macs("bhd,bsd->bhs", (2, 3, 4), (2, 5, 4)) == 120
    with pytest.raises(ValueError, match="index 'd' has sizes 4 and 5"):
        mla_accounting.einsum_macs("hd,sd->hs", (3, 4), (2, 5))


def test_T11_the_absorbed_plan_computes_the_forward():
    """Executing decode_plan's einsums on real arrays gives the absorbed forward's output: the counted
    operations are the ones performed."""
    cfg = config(n_heads=4)
    p = f64_params(cfg)
    x = np.random.default_rng(14).normal(size=(1, 6, 64))
    cache = mla.LatentKVCache.for_config(cfg, dtype=np.float64)
    mla.forward(p, x[:, :5], cfg, np.arange(5), kv_cache=cache, positional=registry.chosen("positional", cfg))
    y, c = mla.forward(p, x[:, 5:], cfg, np.array([5]), kv_cache=cache, impl="absorbed", need_cache=True, positional=registry.chosen("positional", cfg))
    H, Dh, Dv, Dc, Dq, Dr = mla.dims(cfg)
    scale = mla.softmax_scale(cfg)
    operands = {"absorb W_UK into the query": (c["hook_q"][0, :, 0] * scale, p["W_UK"].reshape(Dc, H, Dh).transpose(1, 2, 0))}
    plan = mla_accounting.decode_plan(AttentionSizes.from_config(cfg), 6, "absorbed")
    (_, s0, _), (_, s1, _), (_, s2, _), (_, s3, _), (_, s4, _) = plan
    q_lat = np.einsum(s0, *operands["absorb W_UK into the query"])
    scores = np.einsum(s1, q_lat, cache.c_kv(0)[0]) + np.einsum(s2, c["hook_rot_q"][0, :, 0] * scale, cache.k_r(0)[0])
    z = np.einsum(s4, np.einsum(s3, nn.softmax(scores), cache.c_kv(0)[0]),
                  p["W_UV"].reshape(Dc, H, Dv).transpose(1, 0, 2))
    assert np.abs(z.reshape(1, 1, H * Dv) @ p["W_O"] - y).max() < 1e-12


# --------------------------------------------------------------------------- T12 DeepSeek's layout
def deepseek_absorb_reference(packed, x, cfg, positions):
    """DeepSeek-V3 ``inference/model.py`` MLA.forward with ``attn_impl="absorb"``, transcribed to numpy
    on the fused (out, in) weights: a second, independent reading of the same maths."""
    H, Dh, Dv, Dc, Dq, Dr = mla.dims(cfg)
    B, T, _ = x.shape

    def rms(a, w):
        return a / np.sqrt((a * a).mean(-1, keepdims=True) + cfg.norm_eps) * w

    def rope(a):  # (..., T, Dr)
        cos, sin = positional.rope_angles(positions, Dr, cfg.rope_base)
        return positional.rope_apply(a, cos, sin, cfg.rope_style)

    q = rms(x @ packed["wq_a"].T, packed["q_norm"]) @ packed["wq_b"].T if Dq else x @ packed["wq"].T
    q = q.reshape(B, T, H, Dh + Dr)
    q_nope, q_pe = q[..., :Dh], rope(q[..., Dh:].transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    kv = x @ packed["wkv_a"].T
    kv, k_pe = rms(kv[..., :Dc], packed["kv_norm"]), rope(kv[..., Dc:])
    wkv_b = packed["wkv_b"].reshape(H, Dh + Dv, Dc)
    q_nope = np.einsum("bshd,hdc->bshc", q_nope, wkv_b[:, :Dh])
    scores = (np.einsum("bshc,btc->bsht", q_nope, kv) + np.einsum("bshr,btr->bsht", q_pe, k_pe)) / math.sqrt(Dh + Dr)
    scores = scores + np.triu(np.full((T, T), -np.inf), 1)[None, :, None, :]
    o = np.einsum("bsht,btc->bshc", nn.softmax(scores), kv)
    o = np.einsum("bshc,hdc->bshd", o, wkv_b[:, -Dv:])
    return o.reshape(B, T, H * Dv) @ packed["wo"].T


@pytest.mark.parametrize("kw", [dict(), dict(d_latent_q=None), dict(rope_style="interleaved")])
def test_T12_deepseek_fused_layout_round_trip_and_meaning(kw):
    cfg = config(**kw)
    p = f64_params(cfg)
    packed = mla_layout.to_deepseek_layout(p, cfg)
    H, Dh, Dv, Dc, Dq, Dr = mla.dims(cfg)
    assert packed["wkv_a"].shape == (Dc + Dr, 64) and packed["wkv_b"].shape == (H * (Dh + Dv), Dc)
    assert packed["wo"].shape == (64, H * Dv)
    q_b = packed["wq_b"] if Dq else packed["wq"]
    assert q_b.shape == (H * (Dh + Dr), Dq or 64)
    # per head i, kv_b's rows are [W_UK,i ; W_UV,i] and q_b's rows are [W_UQ,i (nope) ; W_QR,i (rope)]
    i = 2
    assert np.array_equal(packed["wkv_b"].reshape(H, Dh + Dv, Dc)[i, :Dh], p["W_UK"][:, i * Dh:(i + 1) * Dh].T)
    assert np.array_equal(packed["wkv_b"].reshape(H, Dh + Dv, Dc)[i, Dh:], p["W_UV"][:, i * Dv:(i + 1) * Dv].T)
    q_rope = p["W_QR"] if Dq else p["W_Q"][:, H * Dh:]
    assert np.array_equal(q_b.reshape(H, Dh + Dr, -1)[i, Dh:], q_rope[:, i * Dr:(i + 1) * Dr].T)
    back = mla_layout.from_deepseek_layout(packed, cfg)
    assert set(back) == set(p) and all(np.array_equal(back[k], p[k]) for k in p)
    x = np.random.default_rng(15).normal(size=(2, 6, 64))
    ours = mla.forward(p, x, cfg, np.arange(6), positional=registry.chosen("positional", cfg))[0]
    assert np.abs(ours - deepseek_absorb_reference(packed, x, cfg, np.arange(6))).max() < 1e-12


# --------------------------------------------------------------------------- the model
# note: the model-level gradient check, causality and cached-vs-recomputed generation run for these
# configurations in tests/test_model.py (its VARIANTS); here are the checks specific to MLA.
MODEL_VARIANTS = [
    dict(attention="mla", positional="rope", d_latent=16, d_rope=4),
    dict(attention="mla", positional="rope", rope_style="interleaved", d_latent=16, d_latent_q=12, norm="rmsnorm",
         bias=False, ffn="swiglu"),
    dict(attention="mla", positional="learned", d_latent=8, latent_norm=False),
]


@pytest.mark.parametrize("kw", MODEL_VARIANTS)
def test_model_generates_with_a_latent_cache_even_past_the_context(kw):
    m = GPT(ModelConfig.preset("toy", **kw), seed=2)
    assert isinstance(model_mod.new_kv_cache(m.config), mla.LatentKVCache)
    assert m.forward(np.array([[1, 2, 3]])).dtype == np.float32
    a = m.generate(np.arange(10)[None] % 64, 10, temperature=0.0, crop=True)
    assert np.array_equal(a, m.generate(np.arange(10)[None] % 64, 10, temperature=0.0, crop=True, use_cache=False))


def test_model_gradients_reach_the_latent_weights():
    report = gradcheck_model(ModelConfig.preset("toy", **MODEL_VARIANTS[1]))
    assert report.ok and {"blocks.1.attn.W_UK", "blocks.1.attn.W_DQ", "blocks.0.attn.kv_norm"} <= {c.name for c in report.checks}


def test_model_with_mla_trains():
    from minitransformer.training import TrainConfig, Trainer

    cfg = ModelConfig.preset("toy", **MODEL_VARIANTS[0])
    text = np.tile(np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7]), 60)  # a repeating pattern to learn
    trainer = Trainer(GPT(cfg, seed=0), text, config=TrainConfig(steps=40, batch_size=8, warmup=5, eval_every=0),
                      log=None)
    state = trainer.run()
    first, last = state.losses[0][1], np.mean([l for _, l in state.losses[-5:]])
    assert last < 0.5 * first, (first, last)


def test_run_with_cache_publishes_the_latent():
    m = GPT(ModelConfig.preset("toy", **MODEL_VARIANTS[1]), seed=0)
    _, cache = m.run_with_cache(np.array([[1, 2, 3, 4]]))
    assert cache["blocks.0.attn.hook_latent"].shape == (1, 4, 16)
    assert cache["blocks.1.attn.hook_latent_q"].shape == (1, 4, 12)
    assert cache["blocks.0.attn.hook_pattern"].shape == (1, 4, 4, 4)
    assert cache["blocks.0.attn.hook_rot_k"].shape == (1, 4, 4)


def test_run_with_hooks_can_ablate_an_mla_head():
    m = GPT(ModelConfig.preset("toy", **MODEL_VARIANTS[0]), seed=0)
    ids = np.array([[1, 2, 3, 4, 5]])
    assert np.array_equal(m.run_with_hooks(ids, {"blocks.0.attn.hook_z": lambda z: z}), m.forward(ids))

    def ablate_head_0(z):  # (B, T, H, Dv)
        z = z.copy()
        z[:, :, 0] = 0.0
        return z

    assert not np.allclose(m.run_with_hooks(ids, {"blocks.0.attn.hook_z": ablate_head_0}), m.forward(ids))
