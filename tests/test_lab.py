"""The interpretability lab: patching, path patching, attribution patching, DLA, head detectors, induction."""

import numpy as np
import pytest

from minitransformer.core import registry
from minitransformer.core.config import ModelConfig
from minitransformer.lab import attribution, detectors, dla, induction, patching, paths
from minitransformer.model import GPT, norm_forward
from minitransformer.trace import hook_table, run_with_cache, run_with_hooks

CLEAN = np.array([[3, 7, 12, 5, 9, 30, 2, 17], [1, 4, 22, 8, 6, 11, 40, 2]])
CORRUPT = CLEAN.copy()
CORRUPT[:, 2] = [13, 23]  # one token changed in each row
METRIC = patching.LogitDiff(correct=[5, 8], incorrect=[9, 6])


def float64(model: GPT) -> GPT:
    def cast(tree):
        if isinstance(tree, dict):
            return {k: cast(v) for k, v in tree.items()}
        if isinstance(tree, list):
            return [cast(v) for v in tree]
        return tree.astype(np.float64)
    return GPT(model.config, params=cast(model.params))


def make(seed=0, **overrides) -> GPT:
    """A toy model whose weights are large enough for patching to matter (init is small)."""
    cfg = ModelConfig.preset("toy", **overrides)
    m = GPT(cfg, seed=seed)
    rng = np.random.default_rng(seed + 100)
    for i, b in enumerate(m.params["blocks"]):
        for k in ("W_Q", "W_K", "W_V", "W_O"):
            if k in b["attn"]:
                b["attn"][k] *= 8.0
        if "b_O" in b["attn"]:
            b["attn"]["b_O"] += rng.normal(0, 0.1, b["attn"]["b_O"].shape).astype(np.float32)
    m.params["ln_final"]["w"] += rng.normal(0, 0.2, cfg.d_model).astype(np.float32)
    if "b" in m.params["ln_final"]:
        m.params["ln_final"]["b"] += rng.normal(0, 0.2, cfg.d_model).astype(np.float32)
    return float64(m)


VARIANTS = [dict(), dict(positional="rope", n_kv_heads=2, norm="rmsnorm", ffn="swiglu", bias=False),
            dict(tie_embeddings=False)]


# --------------------------------------------------------------------------- activation patching
def test_logit_diff_and_its_gradient():
    logits = np.random.default_rng(0).normal(size=(2, 3, 50))
    assert METRIC(logits) == pytest.approx(np.mean([logits[0, -1, 5] - logits[0, -1, 9], logits[1, -1, 8] - logits[1, -1, 6]]))
    g = METRIC.grad(logits)
    direction = np.random.default_rng(1).normal(size=logits.shape)
    eps = 1e-6
    fd = (METRIC(logits + eps * direction) - METRIC(logits - eps * direction)) / (2 * eps)
    assert np.sum(g * direction) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("overrides", VARIANTS)
def test_patching_everything_restores_clean_logits_and_nothing_changes_nothing(overrides):
    m = make(**overrides)
    clean_logits, clean_cache = run_with_cache(m, CLEAN)
    corrupt_logits, corrupt_cache = run_with_cache(m, CORRUPT)
    assert not np.allclose(clean_logits, corrupt_logits)
    hookable = [r["name"].replace("{i}", str(i)) for r in hook_table(m.config) if r["hookable"]
                for i in range(m.config.n_layers)]
    hookable = sorted(set(hookable) - {"hook_logits"})
    assert np.array_equal(patching.patch_many(m, CORRUPT, clean_cache, hookable), clean_logits)
    # the last residual stream alone carries everything
    last = f"blocks.{m.config.n_layers - 1}.hook_resid_post"
    assert np.array_equal(patching.patch(m, CORRUPT, clean_cache, last), clean_logits)
    # patching a run with its own activations changes nothing
    assert np.array_equal(patching.patch_many(m, CORRUPT, corrupt_cache, hookable), corrupt_logits)
    sweep = patching.patch_heads(m, CORRUPT, corrupt_cache, METRIC)
    assert np.allclose(sweep, METRIC(corrupt_logits), atol=1e-12)


def test_patch_sweeps_shapes_and_known_positions():
    m = make()
    clean_logits, clean_cache = run_with_cache(m, CLEAN)
    corrupt = METRIC(run_with_hooks(m, CORRUPT, {}))
    res = patching.patch_residual(m, CORRUPT, clean_cache, METRIC, "resid_pre")
    assert res.shape == (2, 8)
    # layer 0's stream before the changed token and after it cannot matter: only position 2 differs there
    assert np.allclose(np.delete(res[0], 2), corrupt, atol=1e-12)
    assert res[0, 2] == pytest.approx(METRIC(clean_logits))  # position 2 is all the difference at layer 0
    # the last layer's stream at the last position decides the last logits
    post = patching.patch_residual(m, CORRUPT, clean_cache, METRIC, "resid_post")
    assert post[-1, -1] == pytest.approx(METRIC(clean_logits))
    assert patching.patch_heads_by_position(m, CORRUPT, clean_cache, METRIC).shape == (2, 8, 4)
    out = patching.patching_experiment(m, CLEAN, CORRUPT, METRIC)
    assert out["resid_pre"][0, 2] == pytest.approx(1.0) and out["heads"].shape == (2, 4)


def test_patching_rejects_mismatched_lengths():
    m = make()
    _, cache = run_with_cache(m, CLEAN)
    with pytest.raises(ValueError, match="same number of tokens"):
        patching.patch(m, CORRUPT[:, :5], cache, "blocks.0.hook_resid_pre")


# --------------------------------------------------------------------------- attribution patching
@pytest.mark.parametrize("overrides", VARIANTS)
def test_attribution_patching_equals_the_finite_difference_linear_estimate(overrides):
    m = make(**overrides)
    att = attribution.attribution_patching(m, CLEAN, CORRUPT, METRIC)
    _, clean = run_with_cache(m, CLEAN)
    _, corrupt = run_with_cache(m, CORRUPT)
    eps = 1e-5

    def along(name, where):
        def run(sign):
            def move(a):
                out = a.copy()
                out[where] += sign * eps * (corrupt[name][where] - clean[name][where])
                return out
            return METRIC(run_with_hooks(m, CLEAN, {name: move}))
        return (run(+1) - run(-1)) / (2 * eps)

    for layer in range(2):
        for h in range(4):
            fd = along(f"blocks.{layer}.attn.hook_z", (slice(None), slice(None), h))
            assert att["heads"][layer, h] == pytest.approx(fd, rel=1e-5, abs=1e-7)
        for kind in patching.RESIDUAL:
            for t in (1, 2, 7):
                fd = along(f"blocks.{layer}.hook_{kind}", (slice(None), t))
                assert att[kind][layer, t] == pytest.approx(fd, rel=1e-5, abs=1e-7)


def test_attribution_patching_tracks_real_patching_for_small_changes():
    m = float64(GPT("toy", seed=0))  # freshly initialised: small weights, nearly linear in what a patch changes
    att = attribution.attribution_patching(m, CLEAN, CORRUPT, METRIC)
    _, corrupt_cache = run_with_cache(m, CORRUPT)
    real = patching.patch_residual(m, CLEAN, corrupt_cache, METRIC, "resid_pre") - att["clean"]
    # exact where the patch is a no-op (positions before the corruption at layer 0), close in general
    assert np.allclose(att["resid_pre"][0, :2], 0.0) and np.allclose(real[0, :2], 0.0)
    corr = np.corrcoef(att["resid_pre"].ravel(), real.ravel())[0, 1]
    assert corr > 0.8, corr
    heads_real = patching.patch_heads(m, CLEAN, corrupt_cache, METRIC) - att["clean"]
    assert np.corrcoef(att["heads"].ravel(), heads_real.ravel())[0, 1] > 0.8


def test_on_grad_reports_what_finite_differences_measure():
    m = make()
    value, acts, grads = attribution.activation_gradients(m, CLEAN, METRIC)
    assert value == pytest.approx(METRIC(run_with_hooks(m, CLEAN, {})))
    assert set(grads) >= {"hook_embed", "blocks.1.hook_resid_post", "blocks.0.attn.hook_z"}
    direction = np.random.default_rng(3).normal(size=acts["hook_embed"].shape)
    eps = 1e-6
    plus = METRIC(run_with_hooks(m, CLEAN, {"hook_embed": lambda a: a + eps * direction}))
    minus = METRIC(run_with_hooks(m, CLEAN, {"hook_embed": lambda a: a - eps * direction}))
    assert np.sum(grads["hook_embed"] * direction) == pytest.approx((plus - minus) / (2 * eps), rel=1e-5)


# --------------------------------------------------------------------------- path patching
def _alibi_bias(q_positions, k_positions, config):
    """A score-bias positional variant (ALiBi, Press et al., 2022): head h subtracts slope_h * distance."""
    slopes = 2.0 ** (-8.0 * np.arange(1, config.n_heads + 1) / config.n_heads)  # (H,)
    distance = np.asarray(q_positions)[:, None] - np.asarray(k_positions)[None, :]  # (T, S)
    return -slopes[:, None, None] * np.maximum(distance, 0)  # (H, T, S)


@pytest.fixture
def alibi():
    registry.register_positional("alibi_lab", init=lambda config, rng: {},
                                 forward=lambda params, x, positions, config, need_cache=None: (x, {}),
                                 backward=lambda params, cache, dy: (dy, {}), score_bias=_alibi_bias)
    yield "alibi_lab"
    registry.unregister("positional", "alibi_lab")


@pytest.mark.parametrize("overrides", [dict(), dict(positional="rope", n_kv_heads=2, bias=False),
                                       dict(positional="rope", rope_style="interleaved", n_kv_heads=1),
                                       dict(positional="alibi")])
def test_head_z_rebuilds_the_models_heads(overrides, request):
    if overrides.get("positional") == "alibi":  # a score-bias variant registered by name, as a student would
        overrides = dict(positional=request.getfixturevalue("alibi"))
    m = make(**overrides)
    _, c = run_with_cache(m, CLEAN)
    for layer in range(2):
        x = c[f"blocks.{layer}.hook_resid_pre"]
        for h in range(4):
            assert np.allclose(paths.head_z(m, layer, h, x, x, x), c[f"blocks.{layer}.attn.hook_z"][:, :, h], atol=1e-10)


def test_path_patching_all_paths_of_an_attention_only_model_is_activation_patching():
    # two attention-only layers: a layer-0 head reaches the logits only directly or through layer 1's heads
    m = make(ffn="none")
    _, clean = run_with_cache(m, CLEAN)
    _, corrupt = run_with_cache(m, CORRUPT)
    receivers = [(1, h) for h in range(4)] + ["logits"]
    for h in range(4):
        full = patching.patch(m, CLEAN, corrupt, "blocks.0.attn.hook_z", (slice(None), slice(None), h))
        path = paths.path_patch(m, clean, corrupt, CLEAN, (0, h), receivers, "qkv")
        assert np.allclose(path, full, atol=1e-9)
        # one path alone is a different, smaller intervention
        direct = paths.path_patch(m, clean, corrupt, CLEAN, (0, h), ["logits"])
        assert not np.allclose(direct, full)


def test_path_patching_identical_runs_change_nothing_and_bad_receivers_are_refused():
    m = make()
    clean_logits = run_with_hooks(m, CLEAN, {})
    same = paths.path_patch_senders(m, CLEAN, CLEAN, [(1, 2)], METRIC, inputs="k")
    assert np.all(np.isnan(same[1])) and np.allclose(same[0], METRIC(clean_logits), atol=1e-12)
    assert np.allclose(paths.direct_effects(m, CLEAN, CLEAN, METRIC), METRIC(clean_logits), atol=1e-12)
    _, c = run_with_cache(m, CLEAN)
    with pytest.raises(ValueError, match="later layer"):
        paths.path_patch(m, c, c, CLEAN, (1, 0), [(1, 2)])
    with pytest.raises(ValueError, match="inputs"):
        paths.path_patch(m, c, c, CLEAN, (0, 0), [(1, 2)], inputs="x")


def test_head_to_logits_is_the_final_norm_and_head_applied_to_clean_stream_plus_delta():
    m = make()
    _, clean = run_with_cache(m, CLEAN)
    _, corrupt = run_with_cache(m, CORRUPT)
    delta = paths.head_output(m, 0, 1, corrupt["blocks.0.attn.hook_z"][:, :, 1] - clean["blocks.0.attn.hook_z"][:, :, 1])
    h, _ = norm_forward(m.config, m.params["ln_final"], clean["blocks.1.hook_resid_post"] + delta)  # (B, T, C)
    expect = h @ dla.unembedding(m)
    assert np.allclose(paths.path_patch(m, clean, corrupt, CLEAN, (0, 1), ["logits"]), expect, atol=1e-10)


# --------------------------------------------------------------------------- direct logit attribution
@pytest.mark.parametrize("overrides", VARIANTS + [dict(positional="none"), dict(attention="mla", positional="rope")])
@pytest.mark.parametrize("center", [True, False])
def test_dla_contributions_sum_to_the_logits(overrides, center):
    m = make(**overrides)
    logits = run_with_hooks(m, CLEAN, {})
    att = dla.direct_logit_attribution(m, CLEAN, center=center)
    assert att.values.shape[1:] == logits.shape
    assert np.allclose(att.total(), logits, atol=1e-10)
    assert att.heads().shape == (2, 4, 2, 8, m.config.vocab_size)
    has = {lab.split(" ")[-1] for lab in att.labels}
    assert ("centering" in has) == (not center and m.config.norm == "layernorm")
    diff = dla.logit_diff_attribution(m, CLEAN, 5, 9)
    assert np.allclose(diff.total(), logits[:, -1, 5] - logits[:, -1, 9], atol=1e-10)


def test_dla_of_one_head_is_its_output_through_the_frozen_norm():
    m = make()
    _, c = run_with_cache(m, CLEAN)
    att = dla.direct_logit_attribution(m, CLEAN, token_ids=[3, 4])
    out = paths.head_output(m, 1, 2, c["blocks.1.attn.hook_z"][:, :, 2])  # (B, T, C)
    ln = m.params["ln_final"]
    expect = ((out - out.mean(-1, keepdims=True)) / c["ln_final.hook_scale"] * ln["w"]) @ dla.unembedding(m)[:, [3, 4]]
    assert np.allclose(att.of("L1H2"), expect)


# --------------------------------------------------------------------------- detectors
def test_detectors_on_hand_made_patterns():
    T = 6
    ids = np.array([[4, 5, 6, 4, 5, 6]])  # a repeated sequence of 3
    prev = np.eye(T, k=-1)
    prev[0, 0] = 1.0
    induction_p = np.zeros((T, T))
    induction_p[:3, 0] = 1.0  # first half: nothing to do, attend to position 0
    for t in range(3, T):
        induction_p[t, t - 2] = 1.0  # the token after the earlier copy
    dup = np.zeros((T, T))
    dup[:3, 0] = 1.0
    for t in range(3, T):
        dup[t, t - 3] = 1.0
    uniform = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]
    pattern = np.stack([prev, induction_p, dup, uniform])[None]  # (1, 4, T, T)
    # queries 1..5 count for the previous-token score; query 1's previous token is position 0
    assert np.allclose(detectors.previous_token_score(pattern), [1, 0.2, 0.2, np.mean(1 / np.arange(2, T + 1))])
    assert np.allclose(detectors.induction_score(pattern, ids), [0, 1, 0, np.mean(1 / np.arange(4, T + 1))])
    assert np.allclose(detectors.duplicate_token_score(pattern, ids), [0, 0, 1, np.mean(1 / np.arange(4, T + 1))])
    assert np.allclose(detectors.attention_sink_score(pattern), [0.2, 0.4, 0.6, np.mean(1 / np.arange(2, T + 1))])
    with pytest.raises(ValueError, match="pattern"):
        detectors.previous_token_score(pattern[0])


def test_repeated_random_tokens_and_targets():
    ids = detectors.repeated_random_tokens(np.random.default_rng(0), 3, 5, 20)
    assert ids.shape == (3, 10) and np.array_equal(ids[:, :5], ids[:, 5:])
    assert all(len(set(r[:5])) == 5 for r in ids.tolist())
    t = detectors.induction_targets(ids)
    assert t[:, 5:].sum() == 3 * 5 and t.sum(axis=-1)[:, 5:].max() == 1 and t[:, 5, 1].all() and not t[:, :5].any()  # first repeat has its target


# --------------------------------------------------------------------------- induction heads form
def test_attention_only_variant_adds_nothing():
    m = GPT(induction.attention_only_config(vocab=20, half=4), seed=0)
    _, c = run_with_cache(m, np.array([[1, 2, 3, 4]]))
    assert np.array_equal(c["blocks.0.hook_mlp_out"], np.zeros_like(c["blocks.0.hook_mlp_out"]))
    assert not any(".mlp." in n for n in c.keys())


def test_training_batch_repeats_its_segment_and_targets_only_the_second_copy():
    ids, targets = induction.training_batch(np.random.default_rng(0), 16, 12, 20)
    assert ids.shape == targets.shape == (16, 12)
    for row, tgt in zip(ids, targets):
        h = int((tgt != -100).sum())
        assert 3 <= h <= 6 and np.all(tgt[:-h] == -100)
        assert np.array_equal(tgt[-h:-1], row[-h + 1:])  # next-token targets within the second copy
        assert np.array_equal(tgt[-h:], row[-2 * h + 1:-h + 1])  # the second copy repeats the first


@pytest.mark.slow  # processes and seconds of training: the full suite runs it, the fast path not
def test_induction_heads_form_in_an_attention_only_model():
    # seeded; across seeds 0-2 the best layer-1 induction score goes from 0.07 to 0.71-0.74 in
    # 600 steps, with the phase change at steps 275-325, so the thresholds keep a wide margin
    run = induction.train_induction(steps=600, seed=0)
    assert run.model.config.ffn == "none"
    assert run.induction[0] < 0.15  # before: about uniform attention
    assert run.induction[-1] > 0.5  # after: most of the attention on the token after the earlier copy
    step = run.phase_change()
    assert 100 <= step <= 500
    before = run.steps.index(step) - 2
    assert run.induction[before] < 0.35
    assert run.loss_second[-1] < run.loss_second[0] - 2.0  # the repeat became predictable in context


def test_figures_draw_the_arrays_they_are_given():
    from matplotlib.figure import Figure

    from minitransformer.figures import lab as figures
    values = np.array([[0.5, -1.0, np.nan], [0.0, 2.0, 0.25]])
    fig = figures.layer_head_map(values, title="heads")
    image = fig.axes[0].images[0]
    assert isinstance(fig, Figure) and np.array_equal(image.get_array().filled(np.nan), values, equal_nan=True)
    assert image.get_clim() == (-2.0, 2.0)  # diverging, centred on zero
    fig = figures.layer_position_map(values, labels=["a", "b", "c"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]
    run = induction.InductionRun(steps=[0, 10, 20, 30], induction=[0.1, 0.1, 0.6, 0.7], previous_token=[0.1] * 4,
                                 loss_first=[3.0] * 4, loss_second=[3.0, 3.0, 1.0, 0.5])
    assert run.phase_change() == 20  # first step past half-way from 0.1 to 0.7
    fig = figures.induction_over_training(run)
    assert "step 20" in fig.axes[0].get_title()
    labels = ["a", "b", "c"]
    fig = figures.logit_attribution_bars(labels, np.array([0.1, -3.0, 1.0]), k=2)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["c", "b"]  # largest at the top


def test_path_patching_refuses_attention_without_per_head_keys_and_values():
    m = make(attention="mla", positional="rope")
    _, c = run_with_cache(m, CLEAN)
    with pytest.raises(ValueError, match="no W_K and W_V"):
        paths.path_patch(m, c, c, CLEAN, (0, 0), ["logits"])
