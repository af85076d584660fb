"""Mixture of experts with DeepSeek-V3 routing: the equations, both paths, gradients, balancing, the model."""

import itertools
import json

import numpy as np
import pytest

from minitransformer.core.config import ModelConfig
from minitransformer.feedforward import moe, moe_router
from minitransformer.kit import check_stage, gradcheck, gradcheck_model
from minitransformer.model import GPT
from minitransformer.training import AdamW, Trainer, TrainConfig, resume


def moe_config(**kw):
    base = dict(ffn="moe", n_experts=8, experts_per_token=2, d_expert=8)
    return ModelConfig.preset("toy", **{**base, **kw})


# --------------------------------------------------------------------------- the router's equations
def test_bias_changes_the_choice_but_not_the_gate_values():
    s = np.array([[0.9, 0.1, 0.5, 0.6]])
    ids = moe_router.select_experts(s, np.zeros(4), k=2)
    assert ids.tolist() == [[0, 3]]
    np.testing.assert_allclose(moe_router.gate_values(s, ids), [[0.9 / 1.5, 0.6 / 1.5]])
    b = np.array([0.0, 0.0, 0.5, 0.0])  # promotes expert 2 above expert 0 (0.5 + 0.5 > 0.9)
    ids_b = moe_router.select_experts(s, b, k=2)
    assert ids_b.tolist() == [[2, 0]]
    # the gates are the affinities s of the chosen experts, normalised: b plays no part in them
    np.testing.assert_allclose(moe_router.gate_values(s, ids_b), [[0.5 / 1.4, 0.9 / 1.4]])
    np.testing.assert_allclose(moe_router.gate_values(s, ids_b, scaling=2.5, normalize=False), [[1.25, 2.25]])


def test_group_limited_routing_on_a_hand_made_table():
    # groups of two: {0,1} top-2 sum 1.00, {2,3} 1.15, {4,5} 0.95. Expert 0 is the best single
    # expert, but its group is weak: with one group allowed the token goes to group {2,3} only.
    s = np.array([[0.95, 0.05, 0.60, 0.55, 0.50, 0.45]])
    assert moe_router.select_experts(s, np.zeros(6), k=2, n_groups=3, groups_per_token=1).tolist() == [[2, 3]]
    assert moe_router.select_experts(s, np.zeros(6), k=2, n_groups=3, groups_per_token=2).tolist() == [[0, 2]]
    assert moe_router.select_experts(s, np.zeros(6), k=2, n_groups=1).tolist() == [[0, 2]]
    # the bias takes part in the group scores too: lift group {4,5} to the top
    b = np.array([0, 0, 0, 0, 0.2, 0.2])
    assert moe_router.select_experts(s, b, k=2, n_groups=3, groups_per_token=1).tolist() == [[4, 5]]


def brute_force_choice(choice_row, k, n_groups, groups_per_token):
    """The definition, spelled out: best groups by their two best scores, then best K inside them."""
    groups = np.split(np.arange(len(choice_row)), n_groups)
    score = [np.sort(choice_row[g])[-2:].sum() for g in groups]
    allowed = np.concatenate([groups[i] for i in np.argsort(score)[::-1][:groups_per_token]])
    return sorted(allowed, key=lambda e: -choice_row[e])[:k]


@pytest.mark.parametrize("E, G, Kg, K", [(8, 4, 2, 3), (12, 3, 1, 2), (8, 1, 1, 4), (16, 8, 3, 5)])
def test_selection_matches_the_definition_on_random_tables(E, G, Kg, K):
    rng = np.random.default_rng(E * G + K)
    s, b = rng.random((50, E)), rng.normal(0, 0.1, E)
    ids = moe_router.select_experts(s, b, K, G, Kg)
    for row, chosen in zip(s + b, ids):
        assert chosen.tolist() == brute_force_choice(row, K, G, Kg)


@pytest.mark.parametrize("scaling", [1.0, 2.5])
def test_gates_sum_to_routed_scaling_and_no_token_is_dropped(scaling):
    cfg = moe_config(routed_scaling=scaling, n_expert_groups=4, groups_per_token=2, experts_per_token=3)
    params = moe.init(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(3, 7, 32)).astype(np.float32)
    _, cache = moe.forward(params, x, cfg)
    np.testing.assert_allclose(cache["hook_gates"].sum(-1), scaling, rtol=1e-6)
    ids = cache["hook_expert_ids"]
    assert all(len(set(row)) == 3 for row in ids.reshape(-1, 3).tolist())  # K distinct experts each
    assert cache["hook_expert_load"].sum() == 3 * 7 * 3 and (cache["hook_gates"] > 0).all()


def test_an_overloaded_expert_takes_every_token():
    cfg = moe_config(n_shared_experts=0)
    params = moe.init(cfg, np.random.default_rng(0))
    params["b_router"][5] = 10.0  # every token chooses expert 5 first
    x = np.random.default_rng(1).normal(size=(4, 16, 32)).astype(np.float32)
    y, cache = moe.forward(params, x, cfg)
    assert cache["hook_expert_load"][5] == 64 and (cache["hook_expert_ids"][..., 0] == 5).all()
    y_ref, _ = moe.forward(params, x, cfg, impl="reference")
    np.testing.assert_allclose(y, y_ref, atol=1e-6)  # no capacity limit: nothing dropped on either path


def test_output_is_shared_plus_gated_experts_by_the_equation():
    cfg = moe_config(n_shared_experts=2, routed_scaling=1.7)
    p = moe.init(cfg, np.random.default_rng(0))
    x = np.random.default_rng(1).normal(size=(1, 3, 32)).astype(np.float64)
    y, cache = moe.forward(p, x, cfg)
    silu = lambda z: z / (1 + np.exp(-z))  # noqa: E731
    for t in range(3):
        u = x[0, t]
        s = 1 / (1 + np.exp(-(u @ p["W_router"])))
        top = np.argsort(-s)[:2]
        want = (silu(u @ p["W_gate_shared"]) * (u @ p["W_in_shared"])) @ p["W_out_shared"]
        for e in top:
            want = want + 1.7 * s[e] / s[top].sum() * ((silu(u @ p["W_gate"][e]) * (u @ p["W_in"][e])) @ p["W_out"][e])
        np.testing.assert_allclose(y[0, t], want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(cache["hook_router_scores"][0, t], s, rtol=1e-6)


# --------------------------------------------------------------------------- two paths, one answer; gradients
PATH_CONFIGS = [dict(), dict(n_shared_experts=0), dict(n_expert_groups=4, groups_per_token=2),
                dict(expert_ffn="gelu", n_shared_experts=2), dict(normalize_gates=False, routed_scaling=2.0),
                dict(balance_loss=0.1, experts_per_token=3)]


@pytest.mark.parametrize("kw", PATH_CONFIGS)
def test_reference_and_fast_agree_forward_and_backward(kw):
    cfg = moe_config(**kw)
    rng = np.random.default_rng(0)
    p = moe.init(cfg, rng)
    x = rng.normal(size=(2, 9, 32)).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    (y_f, c_f), (y_r, c_r) = moe.forward(p, x, cfg, impl="fast"), moe.forward(p, x, cfg, impl="reference")
    np.testing.assert_allclose(y_f, y_r, rtol=1e-5, atol=1e-7)
    assert y_f.dtype == np.float32
    dy_copy = dy.copy()
    (dx_f, g_f), (dx_r, g_r) = moe.backward(p, c_f, dy), moe.backward(p, c_r, dy)
    assert np.array_equal(dy, dy_copy)  # backward never writes into dy
    np.testing.assert_allclose(dx_f, dx_r, rtol=1e-5, atol=1e-7)
    assert set(g_f) == set(g_r) == set(p)
    for k in p:
        np.testing.assert_allclose(g_f[k], g_r[k], rtol=1e-5, atol=1e-7, err_msg=k)
    assert not g_f["b_router"].any()  # the bias only chooses: no gradient


GRAD_CONFIGS = [dict(n_shared_experts=sh, n_expert_groups=g, groups_per_token=kg)
                for sh, (g, kg) in itertools.product((0, 1), ((1, 1), (4, 2)))]
GRAD_CONFIGS += [dict(expert_ffn="gelu"), dict(normalize_gates=False, routed_scaling=2.5), dict(balance_loss=0.3)]


@pytest.mark.parametrize("impl", moe.IMPLS)
@pytest.mark.parametrize("kw", GRAD_CONFIGS)
def test_gradcheck_float64_random_upstream(kw, impl):
    cfg = moe_config(**kw)
    rng = np.random.default_rng(1)
    p = {k: v.astype(np.float64) + rng.normal(0, 0.3, v.shape) for k, v in moe.init(cfg, rng).items()}
    x = rng.normal(size=(2, 5, 32))
    y, cache = moe.forward(p, x, cfg, impl=impl)
    dy = rng.normal(size=y.shape)
    dx, grads = moe.backward(p, cache, dy)

    def objective(a):  # y, and the balance loss (weight 1 upstream) when it is on
        y, c = moe.forward({k: a[k] for k in p}, a["x"], cfg, impl=impl, need_cache=True)
        return np.append(y.ravel(), c.get("balance_loss", 0.0))

    report = gradcheck(objective, {"x": x, **p}, {"x": dx, **grads}, np.append(dy.ravel(), 1.0), rng=rng)
    assert report.ok, str(report)


def test_balance_loss_by_hand_and_its_push_on_an_overloaded_expert():
    s = np.array([[[0.8, 0.2], [0.6, 0.6]]])  # (B=1, T=2, E=2); normalised rows: [.8, .2], [.5, .5]
    P = np.array([0.65, 0.35])  # mean normalised affinity per expert
    both_to_0 = np.array([[[0], [0]]])  # K = 1: f = E / (K T) * counts = [2, 0]
    one_each = np.array([[[0], [1]]])  # f = [1, 1]
    loss, f = moe_router.balance_loss(s, both_to_0, 0.5)
    assert loss == pytest.approx(0.5 * 2 * P[0]) and f.tolist() == [[2.0, 0.0]]
    assert moe_router.balance_loss(s, one_each, 0.5)[0] == pytest.approx(0.5 * P.sum())
    # the gradient raises the loss with expert 0's affinity and lowers it with expert 1's:
    # descent moves probability mass away from the overloaded expert
    ds = moe_router.balance_loss_backward(s, f, 0.5)
    assert (ds[..., 0] > 0).all() and (ds[..., 1] < 0).all()


def test_the_stage_contract_kit_passes():
    for kw in ({}, dict(n_expert_groups=2, groups_per_token=1)):
        assert check_stage("feedforward", "moe", moe_config(**kw)).ok


# --------------------------------------------------------------------------- balancing without a loss
def test_bias_update_moves_a_skewed_router_toward_balance():
    cfg = moe_config(n_shared_experts=0)
    rng = np.random.default_rng(0)
    p = moe.init(cfg, rng)
    p["W_router"][:, :2] += 0.3  # experts 0 and 1 favoured by inputs with a positive mean
    x = (rng.normal(size=(4, 16, 32)) + 0.5).astype(np.float32)

    def imbalance():
        load = moe.forward(p, x, cfg, need_cache=True)[1]["hook_expert_load"]
        return load, load.max() / load.mean()

    load0, before = imbalance()
    assert before > 3  # heavily skewed to start with
    for _ in range(200):
        load, _ = imbalance()
        moe.update_bias(p, load, gamma=0.01)
    _, after = imbalance()
    assert after < 1.6 and p["b_router"][:2].max() < 0 < p["b_router"][2:].max()


def test_update_bias_signs_and_errors():
    state = {"b_router": np.ones(3, np.float32)}
    moe.update_bias(state, np.array([0, 3, 6]), 0.5)
    np.testing.assert_array_equal(state["b_router"], [1.5, 1.0, 0.5])
    with pytest.raises(ValueError, match="hook_expert_load"):
        moe.update_bias(state, np.ones(4), 0.1)


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("kw, message", [
    (dict(n_experts=16), "n_experts=16 is a mixture-of-experts setting; it needs ffn='moe'"),
    (dict(ffn="moe", n_experts=6, n_expert_groups=4), "divisible by n_expert_groups"),
    (dict(ffn="moe", n_experts=4, n_expert_groups=4), "at least 2"),
    (dict(ffn="moe", n_experts=8, n_expert_groups=2, groups_per_token=3), "groups_per_token=3 exceeds"),
    (dict(ffn="moe", n_experts=8, n_expert_groups=4, groups_per_token=1, experts_per_token=3), "more than the 2 experts"),
    (dict(ffn="moe", experts_per_token=0), "experts_per_token=0 must be a positive int"),
    (dict(ffn="moe", n_shared_experts=-1), "n_shared_experts=-1 must be an int >= 0"),
    (dict(ffn="moe", expert_ffn="relu"), "expert_ffn='relu' is not valid"),
    (dict(ffn="moe", dense_ffn="moe"), "dense_ffn='moe' is not valid"),
    (dict(ffn="moe", moe_impl="gpu"), "moe_impl='gpu' is not valid"),
    (dict(ffn="moe", first_dense_layers=3), "first_dense_layers=3 exceeds n_layers=2"),
    (dict(ffn="moe", routed_scaling=0.0), "routed_scaling=0.0 must be a finite number > 0"),
    (dict(ffn="moe", routed_scaling=float("inf")), "routed_scaling=inf must be a finite number > 0"),
    (dict(ffn="moe", balance_speed=-1e-3), "balance_speed=-0.001 must be a finite number >= 0"),
    (dict(ffn="moe", balance_loss=float("nan")), "balance_loss=nan must be a finite number >= 0"),
])
def test_invalid_moe_configs_say_what_to_do(kw, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig.preset("toy", **kw)


def test_config_json_round_trip_and_old_files_still_load():
    cfg = moe_config(n_expert_groups=4, groups_per_token=2, first_dense_layers=1, balance_loss=1e-4)
    assert ModelConfig.from_dict(json.loads(cfg.to_json())) == cfg
    old = {k: v for k, v in ModelConfig.preset("toy").to_dict().items() if k in ("vocab_size", "d_model", "ffn")}
    assert ModelConfig.from_dict(old).ffn == "gelu"
    assert moe_config(d_expert=None).expert_width == 32  # 88 (dense SwiGLU width) / (K + S = 3), up to 8s


# --------------------------------------------------------------------------- in the model
def test_dense_first_layers_then_moe_and_parameter_counts():
    cfg = moe_config(first_dense_layers=1, dense_ffn="gelu", n_shared_experts=1)
    model = GPT(cfg, seed=0)
    assert model.params["blocks"][0]["mlp"]["W_in"].shape == (32, 128)  # dense GELU, 4 C
    mlp = model.params["blocks"][1]["mlp"]
    assert mlp["W_in"].shape == (8, 32, 8) and mlp["b_router"].shape == (8,)
    C, E, Fe = 32, 8, 8
    moe_layer = C * E + E + (E + 1) * 3 * C * Fe  # router, bias, 8 routed + 1 shared SwiGLU expert
    dense = GPT(ModelConfig.preset("toy"), seed=0)
    assert model.num_params == dense.num_params - dense.params["blocks"][1]["mlp"]["W_in"].size * 2 \
        - 32 - 128 + moe_layer  # block 1: the dense GELU MLP (with biases) swapped for the MoE
    assert model.num_params - model.num_active_params == (E - 2) * 3 * C * Fe  # 6 skipped experts, 1 layer
    assert gradcheck_model(cfg).ok


def test_trace_publishes_the_routing():
    model = GPT(moe_config(first_dense_layers=1), seed=0)
    _, cache = model.run_with_cache(np.array([[1, 2, 3, 4]]))
    assert cache["blocks.1.mlp.hook_expert_ids"].shape == (1, 4, 2)
    assert cache["blocks.1.mlp.hook_router_scores"].shape == (1, 4, 8)
    np.testing.assert_allclose(cache["blocks.1.mlp.hook_shared_out"] + cache["blocks.1.mlp.hook_routed_out"],
                               cache["blocks.1.hook_mlp_out"], atol=1e-6)
    assert "blocks.0.mlp.hook_expert_ids" not in cache  # block 0 is dense


def test_published_names_match_the_table_and_generation_uses_the_kv_cache():
    cfg = moe_config(first_dense_layers=1, n_expert_groups=2, groups_per_token=1)
    model = GPT(cfg, seed=0)
    _, cache = model.run_with_cache(np.array([[1, 2, 3]]))
    published = {n[len("blocks.1.mlp."):] for n in cache.keys() if n.startswith("blocks.1.mlp.")}
    assert published == {name for name, _, _ in moe.HOOK_ROWS}
    prompt = np.array([[5, 6, 7]])
    assert np.array_equal(model.generate(prompt, 8, seed=1), model.generate(prompt, 8, seed=1, use_cache=False))


def test_flops_estimate_counts_active_experts_and_the_router():
    from minitransformer.costs import estimate_flops_per_token

    cfg = moe_config(n_shared_experts=1, d_expert=16)
    dense = ModelConfig.preset("toy", ffn="swiglu", d_ff=(2 + 1) * 16)
    assert estimate_flops_per_token(cfg) - estimate_flops_per_token(dense) == 2 * cfg.n_layers * 32 * 8  # router


def pattern_tokens(n=4000):
    return np.tile(np.random.default_rng(0).integers(0, 64, 40), n // 40)  # a sequence that repeats: learnable


def test_moe_gpt_trains_and_adamw_leaves_the_bias_alone():
    model = GPT(moe_config(balance_speed=0.0), seed=0)
    trainer = Trainer(model, pattern_tokens(), config=TrainConfig(steps=25, batch_size=4, lr=1e-2, warmup=2,
                                                                  eval_every=0), log=None)
    state = trainer.run()
    first, last = state.losses[0][1], np.mean([l for _, l in state.losses[-5:]])
    assert last < first - 0.5
    # gamma 0: nothing moves the bias; the optimizer sees a zero gradient and leaves it exactly at 0
    assert all(not b["mlp"]["b_router"].any() for b in model.params["blocks"])


def test_bias_updates_in_training_and_resume_is_exact(tmp_path):
    cfg = moe_config(balance_speed=0.01, n_expert_groups=2, groups_per_token=1, first_dense_layers=1)
    tc = TrainConfig(steps=6, batch_size=4, lr=1e-2, warmup=2, eval_every=0, checkpoint_every=3, accum_steps=2)
    full = Trainer(GPT(cfg, seed=0), pattern_tokens(), config=tc, log=None)
    full.run()
    b_full = full.model.params["blocks"][1]["mlp"]["b_router"].copy()
    assert np.abs(b_full).max() > 0  # the trainer moved the bias

    tc_half = TrainConfig(**{**tc.__dict__, "steps": 3})
    half = Trainer(GPT(cfg, seed=0), pattern_tokens(), config=tc_half, log=None)
    half.run(checkpoint_path=tmp_path / "ck.npz")
    again = resume(tmp_path / "ck.npz", pattern_tokens(), log=None)
    again.config.steps = 6
    again.run()
    assert again.state.losses == full.state.losses
    np.testing.assert_array_equal(again.model.params["blocks"][1]["mlp"]["b_router"], b_full)


def test_bias_stays_a_view_into_the_optimizer_buffer():
    model = GPT(moe_config(), seed=0)
    opt = AdamW(model.params)
    b = model.params["blocks"][0]["mlp"]["b_router"]
    moe.update_bias(model.params["blocks"][0]["mlp"], np.arange(8), 0.5)
    np.testing.assert_array_equal(opt.view(opt.buffer, "blocks.0.mlp.b_router"), b)  # updated in place
    assert b[0] == 0.5 and b[7] == -0.5


# --------------------------------------------------------------------------- parity with transformers' DeepSeek-V3 block
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-5), ("float32", 1e-4)])
def test_parity_with_transformers_deepseek_v3_moe(dtype, tol):
    torch = pytest.importorskip("torch", reason="parity test needs torch")
    pytest.importorskip("transformers", reason="parity test needs transformers")
    from transformers.models.deepseek_v3.configuration_deepseek_v3 import DeepseekV3Config
    from transformers.models.deepseek_v3.modeling_deepseek_v3 import DeepseekV3MoE

    C, E, Fe, S, K = 32, 8, 8, 2, 3
    hc = DeepseekV3Config(hidden_size=C, moe_intermediate_size=Fe, n_routed_experts=E, n_shared_experts=S,
                          num_experts_per_tok=K, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                          norm_topk_prob=True, hidden_act="silu", intermediate_size=64, num_hidden_layers=1,
                          num_attention_heads=4, num_key_value_heads=4, vocab_size=64)
    torch.manual_seed(0)
    block = DeepseekV3MoE(hc)
    with torch.no_grad():
        for prm in block.parameters():
            prm.normal_(0, 0.2)
        block.gate.e_score_correction_bias.normal_(0, 0.05)
    block = block.to(getattr(torch, dtype))
    cfg = moe_config(n_experts=E, n_shared_experts=S, experts_per_token=K, d_expert=Fe, n_expert_groups=4,
                     groups_per_token=2, routed_scaling=2.5)
    t = lambda a: a.detach().double().numpy().astype(dtype)  # noqa: E731
    gate_up = t(block.experts.gate_up_proj)  # (E, 2 Fe, C): gate rows, then up rows
    params = {"W_router": t(block.gate.weight).T, "b_router": t(block.gate.e_score_correction_bias),
              "W_gate": gate_up[:, :Fe].transpose(0, 2, 1), "W_in": gate_up[:, Fe:].transpose(0, 2, 1),
              "W_out": t(block.experts.down_proj).transpose(0, 2, 1),
              "W_gate_shared": t(block.shared_experts.gate_proj.weight).T,
              "W_in_shared": t(block.shared_experts.up_proj.weight).T,
              "W_out_shared": t(block.shared_experts.down_proj.weight).T}
    assert {k: v.shape for k, v in params.items()} == {k: v.shape for k, v in moe.init(cfg, np.random.default_rng(0)).items()}
    x = np.random.default_rng(0).normal(size=(2, 6, C)).astype(dtype)
    with torch.no_grad():
        want = block(torch.from_numpy(x)).numpy()
        _, hf_weights, hf_ids = block.gate(torch.from_numpy(x))
    for impl in moe.IMPLS:
        y, cache = moe.forward(params, x, cfg, impl=impl)
        np.testing.assert_allclose(y, want, rtol=tol, atol=tol)
        ours = cache["hook_expert_ids"].reshape(-1, K)
        assert [set(r) for r in ours.tolist()] == [set(r) for r in hf_ids.numpy().tolist()]  # same experts


def test_training_with_the_bias_update_avoids_router_collapse():
    # random tokens, no structure: without the bias update the router collapses (every token's
    # first choice is one expert: max/mean load = E/K = 4); with DeepSeek-V3's gamma = 0.001 it does not
    tokens = np.random.default_rng(0).integers(0, 64, 20000)
    imbalance = {}
    for gamma in (0.0, 0.001):
        model = GPT(moe_config(n_layers=1, balance_speed=gamma), seed=0)
        trainer = Trainer(model, tokens, config=TrainConfig(steps=250, batch_size=8, lr=3e-3, warmup=2,
                                                            eval_every=0), log=None)
        ratios = []
        for _ in range(250):
            trainer.train_step()
            load = model.last_expert_load[0]
            ratios.append(load.max() / load.mean())
        imbalance[gamma] = np.mean(ratios[-50:])
    assert imbalance[0.0] > 3.5 and imbalance[0.001] < 2.2, imbalance
