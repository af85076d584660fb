"""Seeing inside: published names, the cache shorthand, filters, hooks, the logit lens, the pipeline."""

from pathlib import Path

import numpy as np
import pytest

from minitransformer import model as model_mod
from minitransformer import trace
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus
from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.trace import ActivationCache, hook_table
from minitransformer.trace.pipeline import Pipeline
from minitransformer.trace.lens import logit_lens

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = [dict(), dict(positional="rope", ffn="swiglu", n_kv_heads=2), dict(positional="none", norm="rmsnorm"),
            dict(attention="mla", positional="rope", d_latent_q=16), dict(attention="mla", positional="rope"),
            dict(ffn="moe", n_experts=4, first_dense_layers=1), dict(ffn="moe", n_experts=4, n_shared_experts=0),
            dict(ffn="moe", n_experts=4, expert_ffn="gelu", dense_ffn="gelu", first_dense_layers=1)]
IDS = np.array([[5, 9, 2, 7, 1]])


def expand(config):
    return {r["name"].replace("{i}", str(i)) if "{i}" in r["name"] else r["name"]
            for r in hook_table(config) for i in (r["layers"] if r["layers"] is not None else [0])}


@pytest.mark.parametrize("kw", VARIANTS)
def test_cache_names_are_exactly_the_published_table(kw):
    m = GPT(ModelConfig.preset("toy", **kw), seed=0)
    logits, cache = m.run_with_cache(IDS)
    assert set(cache.keys()) == expand(m.config)
    assert np.array_equal(cache["hook_logits"], logits)
    np.testing.assert_allclose(logits, m.forward(IDS), rtol=1e-4, atol=1e-6)  # the inspected run is the real run (float32 rounding: the two attention paths round differently)


def test_published_document_matches_the_code():
    assert (ROOT / "docs" / "hooks.md").read_text(encoding="utf-8") == trace.hooks_document()


def test_shapes_and_shorthand():
    m = GPT("toy", seed=0)
    _, cache = m.run_with_cache(IDS)
    B, T, H, D = 1, 5, 4, 8
    assert cache["pattern", 0] is cache["blocks.0.attn.hook_pattern"] and cache["pattern", 0].shape == (B, H, T, T)
    assert cache["scores", 1].shape == (B, H, T, T) and cache["scores", 1][0, 0, 0, 1] == -np.inf
    assert cache["z", 0].shape == (B, T, H, D) and cache["resid_post", 1].shape == (B, T, 32)
    assert cache["embed"] is cache["hook_embed"] and cache["post", 0].shape == (B, T, 128)
    assert np.allclose(cache["pattern", 0].sum(-1), 1)
    assert "blocks.0.attn.hook_q" in cache and ("q", 0) in cache and "nonsense" not in cache
    with pytest.raises(KeyError, match="no activation 'nonsense'"):
        cache["nonsense"]
    with pytest.raises(KeyError, match="names of that layer"):
        cache["nonsense", 0]
    assert "ActivationCache(" in repr(cache) and "blocks.1.hook_resid_post" in repr(cache)


def test_residual_stream_adds_up():
    m = GPT("toy", seed=0)
    _, c = m.run_with_cache(IDS)
    for i in range(2):
        assert np.allclose(c[f"blocks.{i}.hook_resid_mid"], c[f"blocks.{i}.hook_resid_pre"] + c[f"blocks.{i}.hook_attn_out"])
        assert np.allclose(c[f"blocks.{i}.hook_resid_post"], c[f"blocks.{i}.hook_resid_mid"] + c[f"blocks.{i}.hook_mlp_out"])
    assert np.allclose(c["blocks.0.hook_resid_pre"], c["hook_embed"] + c["hook_pos_embed"])


@pytest.mark.parametrize(
    "names_filter, expected",
    [
        ("hook_embed", {"hook_embed"}),
        (["hook_logits", "blocks.1.attn.hook_pattern"], {"hook_logits", "blocks.1.attn.hook_pattern"}),
        (lambda n: n.endswith("hook_pattern"), {"blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"}),
    ],
)
def test_names_filter_string_list_callable(names_filter, expected):
    _, cache = GPT("toy").run_with_cache(IDS, names_filter=names_filter)
    assert set(cache.keys()) == expected
    with pytest.raises(ValueError, match="names_filter must be"):
        GPT("toy").run_with_cache(IDS, names_filter=3)


def test_hooks_read_and_change_activations():
    m = GPT("toy", seed=0)
    seen = {}
    logits = m.run_with_hooks(IDS, {"blocks.0.attn.hook_pattern": lambda a: seen.setdefault("p", a.copy())})
    assert np.allclose(logits, m.forward(IDS))  # reading changes nothing
    assert np.allclose(seen["p"], m.run_with_cache(IDS)[1]["pattern", 0])

    # ablating every head of every layer equals removing attention's contribution altogether
    zero = {f"blocks.{i}.attn.hook_z": np.zeros_like for i in range(2)}
    no_bias = GPT(ModelConfig.preset("toy", bias=False), seed=0)
    zeroed = no_bias.run_with_hooks(IDS, zero)
    skip = no_bias.run_with_hooks(IDS, {f"blocks.{i}.hook_attn_out": np.zeros_like for i in range(2)})
    assert np.allclose(zeroed, skip) and not np.allclose(zeroed, no_bias.forward(IDS))

    # patching a position of the residual stream changes that position and later ones only
    def patch(a):
        a = a.copy()
        a[:, 3] = 0.0
        return a
    patched = m.run_with_hooks(IDS, {"blocks.1.hook_resid_pre": patch})
    base = m.forward(IDS)
    assert np.allclose(patched[:, :3], base[:, :3]) and not np.allclose(patched[:, 3], base[:, 3])


def test_hook_errors():
    m = GPT("toy")
    with pytest.raises(ValueError, match="not a hook point.*published .* but a hook cannot change it"):
        m.run_with_hooks(IDS, {"blocks.0.attn.hook_q": lambda a: a})
    with pytest.raises(ValueError, match="not a hook point.*did you mean 'blocks.0.attn.hook_pattern'"):
        m.run_with_hooks(IDS, {"blocks.0.attn.hook_patern": lambda a: a})
    with pytest.raises(ValueError, match="not a hook point"):
        m.run_with_hooks(IDS, {"blocks.7.hook_resid_pre": lambda a: a})
    # a layer written with a leading zero is not a name the model publishes: it would never fire
    with pytest.raises(ValueError, match="'blocks.01.hook_resid_pre' is not a hook point of this model"):
        m.run_with_hooks(IDS, {"blocks.01.hook_resid_pre": lambda a: a * 0})
    with pytest.raises(ValueError, match="must keep"):
        m.run_with_hooks(IDS, {"hook_logits": lambda a: a[:, :2]})


def test_logit_lens_last_layer_equals_the_model_prediction():
    m = GPT("toy", seed=3)
    logits, cache = m.run_with_cache(IDS)
    lens = logit_lens(m, cache, k=3)
    assert [r["layer"] for r in lens] == [0, 1]
    assert lens[-1]["top_ids"] == np.argsort(-logits[0, -1], kind="stable")[:3].tolist()
    assert np.isclose(sum(model_mod.nn.softmax(logits[0, -1].astype(float))[lens[-1]["top_ids"]]),
                      sum(lens[-1]["top_probs"]))


@pytest.fixture(scope="module")
def pipeline():
    tok = Tokenizer.train(load_corpus("tiny"), 320, special_tokens=["<|endoftext|>"])
    return Pipeline(tok, GPT(ModelConfig.preset("toy", vocab_size=321, positional="rope"), seed=0))


def test_pipeline_steps_follow_the_data_and_the_concepts(pipeline):
    steps = pipeline.trace("the merges find them")
    assert [s.concept for s in steps] == ["distinction", "classification", "indexing", "retrieval", "retrieval", "processing"]
    assert [s.stage.number for s in steps] == [1, 2, 3, 4, 4, 5]
    ids = steps[0].arrays["tokenize.hook_ids"]
    assert ids == pipeline.tokenizer.encode("the merges find them")
    _, cache = pipeline.model.run_with_cache(np.array([ids]))
    assert np.array_equal(steps[1].arrays["hook_embed"], cache["hook_embed"])  # built from the model's own cache
    assert np.array_equal(steps[3].arrays["blocks.0.attn.hook_pattern"], cache["pattern", 0])
    final = steps[-1]
    assert final.arrays["next_id"] == int(np.argmax(cache["hook_logits"][0, -1]))
    assert np.isclose(final.arrays["probs"].sum(), 1)
    for s in steps:
        text = s.describe()
        assert text.startswith(f"[{s.stage.number}. {s.stage.name} | {s.concept}]")
        fig = s.show()
        assert fig.axes  # draws from the real data


def test_pipeline_errors(pipeline):
    with pytest.raises(ValueError, match="empty"):
        pipeline.trace("")
    with pytest.raises(ValueError, match="tokenizer has"):
        Pipeline(pipeline.tokenizer, GPT("toy"))


def test_steps_is_lazy(pipeline):
    it = pipeline.steps("the cat")
    first = next(it)
    assert first.concept == "distinction" and isinstance(first.arrays["tokenize.hook_chunks"], list)


def test_activation_cache_is_a_mapping():
    c = ActivationCache({"hook_embed": np.zeros(2)})
    assert len(c) == 1 and list(c) == ["hook_embed"] and dict(c.items())["hook_embed"].shape == (2,)


def test_normalized_hooks_are_what_the_next_stage_reads():
    m = GPT("toy", seed=0)
    logits, c = m.run_with_cache(IDS)
    assert np.allclose(c["unembed.hook_in"] @ m.params["embed"]["W_E"].T, logits, atol=1e-5)  # tied head
    assert c["unembed.hook_out"] is c["hook_logits"]
    # TransformerLens' meaning: hook_normalized is (x - mean) / scale, before the gain and bias
    ln = m.params["ln_final"]
    assert np.allclose(c["ln_final.hook_normalized"] * ln["w"] + ln["b"], c["unembed.hook_in"], atol=1e-6)
    x = c["blocks.1.hook_resid_post"]
    assert np.allclose((x - x.mean(-1, keepdims=True)) / c["ln_final.hook_scale"], c["ln_final.hook_normalized"], atol=1e-5)
    assert np.allclose(c["ln_final.hook_scale"] ** 2, x.var(-1, keepdims=True) + m.config.norm_eps, rtol=1e-4)
    from minitransformer.feedforward import mlp
    ln2 = m.params["blocks"][0]["ln2"]
    h = c["blocks.0.ln2.hook_normalized"] * ln2["w"] + ln2["b"]  # what the MLP reads
    y, _ = mlp.forward(m.params["blocks"][0]["mlp"], h, m.config, need_cache=False)
    assert np.allclose(y, c["blocks.0.hook_mlp_out"], atol=1e-6)


def test_rmsnorm_scale_is_the_root_mean_square():
    m = GPT(ModelConfig.preset("toy", norm="rmsnorm"), seed=0)
    _, c = m.run_with_cache(IDS)
    x = c["blocks.0.hook_resid_pre"]
    assert np.allclose(c["blocks.0.ln1.hook_scale"] ** 2, (x * x).mean(-1, keepdims=True) + m.config.norm_eps, rtol=1e-4)
    assert np.allclose(c["blocks.0.ln1.hook_normalized"] * c["blocks.0.ln1.hook_scale"], x, atol=1e-5)


def test_an_attention_only_model_publishes_no_mlp_names():
    m = GPT(ModelConfig.preset("toy", ffn="none"), seed=0)
    logits, c = m.run_with_cache(IDS)
    names = {r["name"].replace("{i}", str(i)) for r in hook_table(m.config) for i in range(m.config.n_layers)}
    assert set(c.keys()) == names and not any(".mlp." in n for n in names)
    assert np.array_equal(c["blocks.0.hook_mlp_out"], np.zeros_like(c["blocks.0.hook_mlp_out"]))
    assert np.array_equal(c["blocks.0.hook_resid_post"], c["blocks.0.hook_resid_mid"])


def test_a_type_error_inside_a_hook_is_not_masked():
    m = GPT("toy", seed=0)

    def broken(array, name):
        raise TypeError("my own bug inside the hook")

    with pytest.raises(TypeError, match="my own bug inside the hook"):
        m.run_with_hooks(IDS, {"blocks.0.hook_resid_pre": broken})
    with pytest.raises(ValueError, match=r"must take \(array\) or \(array, name\)"):
        m.run_with_hooks(IDS, {"blocks.0.hook_resid_pre": lambda a, b, c: a})


def test_pipeline_shows_which_experts_processed_each_token(pipeline):
    cfg = ModelConfig.preset("toy", vocab_size=321, ffn="moe", n_experts=4, first_dense_layers=1)
    moe_pipe = Pipeline(pipeline.tokenizer, GPT(cfg, seed=0))
    final = moe_pipe.trace("the merges")[-1]
    ids = pipeline.tokenizer.encode("the merges")
    _, cache = moe_pipe.model.run_with_cache(np.array([ids]))
    chosen, gates = cache["blocks.1.mlp.hook_expert_ids"][0], cache["blocks.1.mlp.hook_gates"][0]  # (T, K)
    text = final.describe()
    assert "layer 0: the experts" not in text  # block 0 is dense
    first = pipeline.tokenizer.decode([ids[0]])
    want = f"{first!r:>14} -> " + ", ".join(f"e{e} ({g:.2f})" for e, g in zip(chosen[0].tolist(), gates[0]))
    assert "layer 1: the experts each token went to (gate) + 1 shared" in text and want in text
    assert np.array_equal(final.arrays["blocks.1.mlp.hook_expert_ids"], cache["blocks.1.mlp.hook_expert_ids"])


@pytest.mark.parametrize("shared", [0, 1])
def test_the_page_data_of_a_mixture_of_experts(pipeline, shared):
    from minitransformer.trace.page.build import page_data

    cfg = ModelConfig.preset("toy", vocab_size=321, ffn="moe", n_experts=4, n_shared_experts=shared)
    data = page_data(pipeline.tokenizer, GPT(cfg, seed=0), "the merges", max_new_tokens=2)
    # without shared experts a MoE layer has no hidden MLP: the page shows the router's 4 scores instead
    assert data["processing"]["d_ff"] == (cfg.expert_width if shared else 4)
