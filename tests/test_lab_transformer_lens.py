"""Peer check: the lab and the hook names against TransformerLens on the same GPT-2 weights.

Skipped unless TransformerLens (and with it torch and transformers) is installed; it is an
optional peer, never a dependency. The model is written as a GPT-2 checkpoint
(`interop.gpt2.export_gpt2`), read back by ``transformers``, converted by TransformerLens'
own ``convert_gpt2_weights`` and loaded into a ``HookedTransformer`` with none of its weight
processing (no LayerNorm folding, no centering, no value-bias folding), so that both compute
the same function. Then:

- every activation name both publish holds the same array, up to the layouts that
  ``docs/hooks.md`` lists (head-major q/k/v here; one ``hook_pos_embed`` row per position);
- activation patching gives the numbers of ``transformer_lens.patching``;
- the gradients ``model.backward(on_grad=...)`` reports equal torch's, read with
  TransformerLens backward hooks, and so do the attribution-patching estimates built on them
  (the bridge's ``hook_resid_mid`` is the second norm's input, see `their_gradients`);
- direct logit attribution of each head equals ``ActivationCache.stack_head_results`` with the
  final norm's cached scale applied (``apply_ln=True``), times the gain and ``W_U``.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the TransformerLens peer check needs torch")
transformers = pytest.importorskip("transformers", reason="the TransformerLens peer check reads the checkpoint "
                                                          "with transformers")
tl = pytest.importorskip("transformer_lens", reason="TransformerLens is an optional peer "
                                                    "(pip install transformer_lens) for this check")

from minitransformer.core.config import ModelConfig  # noqa: E402
from minitransformer.interop.gpt2 import export_gpt2  # noqa: E402
from minitransformer.lab import attribution, dla, patching  # noqa: E402
from minitransformer.model import GPT  # noqa: E402

CLEAN = np.array([[3, 7, 12, 5, 9, 30, 2, 17], [1, 4, 22, 8, 6, 11, 40, 2]])
CORRUPT = CLEAN.copy()
CORRUPT[:, 2] = [13, 23]  # one token changed in each row
CORRECT, INCORRECT = [5, 8], [9, 6]
METRIC = patching.LogitDiff(correct=CORRECT, incorrect=INCORRECT)
HEAD_MAJOR = ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_rot_q", "attn.hook_rot_k")


def torch_metric(logits):
    """`METRIC` on a torch tensor (B, T, V): the mean logit difference at the last position."""
    rows = torch.arange(logits.shape[0])
    return (logits[rows, -1, CORRECT] - logits[rows, -1, INCORRECT]).mean()


def word_tokenizer(vocab_size: int, folder) -> None:
    """Save a word-level tokenizer of ``vocab_size`` ids beside the checkpoint (TransformerLens loads one;
    the tests feed ids, so any tokenizer of the right size will do)."""
    from tokenizers import Tokenizer, models

    words = Tokenizer(models.WordLevel({f"t{i}": i for i in range(vocab_size)}, unk_token="t0"))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=words, bos_token="t0", eos_token="t0",
                                               unk_token="t0", pad_token="t0")
    tok.save_pretrained(folder)


def hooked_transformer(hf, config):
    """TransformerLens 2 and 3: a ``HookedTransformer`` from TransformerLens' own GPT-2 weight conversion."""
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    c = config
    cfg = tl.HookedTransformerConfig(
        n_layers=c.n_layers, d_model=c.d_model, d_head=c.d_head, n_heads=c.n_heads, d_mlp=c.ff_width,
        d_vocab=c.vocab_size, n_ctx=c.context_length, act_fn="gelu_new", normalization_type="LN",
        eps=c.norm_eps, positional_embedding_type="standard", original_architecture="GPT2LMHeadModel",
        default_prepend_bos=False, dtype=torch.float32)
    model = tl.HookedTransformer(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=False, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    return model.eval()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(ours, theirs): one GPT-2 model in this package and in TransformerLens, same weights, no processing.

    TransformerLens 3 and later wrap the ``transformers`` model in a ``TransformerBridge`` (the only way
    from 4.0 on); its compatibility mode gives the HookedTransformer names, here without weight processing.
    """
    torch.set_num_threads(1)
    ours = GPT(ModelConfig.preset("toy", init_std=0.3), seed=0)  # large weights: patches change the answer
    rng = np.random.default_rng(1)
    for norm in [b[k] for b in ours.params["blocks"] for k in ("ln1", "ln2")] + [ours.params["ln_final"]]:
        for k in ("w", "b"):  # gains and biases away from 1 and 0, so that "before gain and bias" is visible
            norm[k] += rng.normal(0.0, 0.3, norm[k].shape).astype(np.float32)
    folder = export_gpt2(ours, tmp_path_factory.mktemp("gpt2") / "checkpoint")
    word_tokenizer(ours.config.vocab_size, folder)
    hf = transformers.GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:  # TransformerLens 2
        return ours, hooked_transformer(hf, ours.config)
    theirs = TransformerBridge.boot_transformers(str(folder), hf_model=hf, dtype=torch.float32)
    theirs.enable_compatibility_mode(no_processing=True, disable_warnings=True)
    return ours, theirs


def numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def assert_close(ours, theirs, what: str, rtol: float = 1e-4) -> None:
    """Equal up to float32 rounding, relative to the array's size; infinities (masked scores) in the same places."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} here, {theirs.shape} in TransformerLens"
    finite = np.isfinite(theirs)
    assert np.array_equal(finite, np.isfinite(ours)) and np.array_equal(ours[~finite], theirs[~finite]), what
    size = max(1.0, float(np.abs(theirs[finite]).max(initial=0.0)))
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=rtol, atol=rtol * size, err_msg=what)


def in_their_layout(name: str, array: np.ndarray, shape) -> np.ndarray:
    """Our activation in TransformerLens' layout (the differences `docs/hooks.md` lists)."""
    if name.endswith(HEAD_MAJOR):
        return array.transpose(0, 2, 1, 3)  # (B, H, T, D) -> (B, T, H, D)
    if name == "hook_pos_embed":
        return np.broadcast_to(array, shape)  # (T, C) -> (B, T, C)
    return array


def test_every_name_both_publish_holds_the_same_array(pair):
    ours, theirs = pair
    logits, cache = ours.run_with_cache(CLEAN)
    their_logits, their_cache = theirs.run_with_cache(torch.tensor(CLEAN))
    assert_close(logits, numpy(their_logits), "logits")
    ours_names, their_names = set(cache.keys()), set(their_cache.keys())
    assert ours_names - their_names == {"hook_logits"}  # TransformerLens calls it unembed.hook_out
    for name in sorted(ours_names & their_names):
        theirs_array = numpy(their_cache[name])
        assert_close(in_their_layout(name, cache[name], theirs_array.shape), theirs_array, name)


def test_activation_patching_gives_transformer_lens_numbers(pair):
    from transformer_lens import patching as tl_patching

    ours, theirs = pair
    _, clean_cache = ours.run_with_cache(CLEAN)
    _, their_clean_cache = theirs.run_with_cache(torch.tensor(CLEAN))
    corrupted = torch.tensor(CORRUPT)
    assert abs(METRIC(ours.forward(CLEAN)) - METRIC(ours.forward(CORRUPT))) > 0.1  # the corruption matters
    sweeps = {"resid_pre": tl_patching.get_act_patch_resid_pre, "attn_out": tl_patching.get_act_patch_attn_out,
              "mlp_out": tl_patching.get_act_patch_mlp_out}
    for kind, theirs_sweep in sweeps.items():
        expected = numpy(theirs_sweep(theirs, corrupted, their_clean_cache, torch_metric))  # (L, T)
        assert_close(patching.patch_residual(ours, CORRUPT, clean_cache, METRIC, kind), expected, kind, rtol=1e-3)
    expected = numpy(tl_patching.get_act_patch_attn_head_out_all_pos(theirs, corrupted, their_clean_cache,
                                                                      torch_metric))  # (L, H)
    assert_close(patching.patch_heads(ours, CORRUPT, clean_cache, METRIC), expected, "heads", rtol=1e-3)
    expected = numpy(tl_patching.get_act_patch_attn_head_out_by_pos(theirs, corrupted, their_clean_cache,
                                                                     torch_metric))  # (L, T, H)
    assert_close(patching.patch_heads_by_position(ours, CORRUPT, clean_cache, METRIC), expected, "heads by position",
                 rtol=1e-3)


def is_bridge(theirs) -> bool:
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return False
    return isinstance(theirs, TransformerBridge)


def their_gradients(theirs, names) -> dict:
    """d metric / d activation on the clean run, for every name in ``names``, read by backward hooks."""
    grads = {}

    def keeper(name):
        def keep(grad, hook):  # note: filed under the name asked for (the bridge's own name may be an alias)
            grads[name] = numpy(grad)
        return keep

    theirs.reset_hooks()
    for name in names:
        theirs.add_hook(name, keeper(name), dir="bwd")
    try:
        torch_metric(theirs(torch.tensor(CLEAN))).backward()
    finally:
        theirs.reset_hooks()
        theirs.zero_grad(set_to_none=True)
    if is_bridge(theirs):
        # subtle: the bridge's hook_resid_mid is an alias of ln2.hook_in, the input of the second norm
        # only, so its backward hook sees the gradient through ln2 and not the one the residual
        # connection carries past the MLP, which is the gradient at hook_resid_post.
        for name in [n for n in grads if n.endswith("hook_resid_mid")]:
            grads[name] = grads[name] + grads[name.replace("hook_resid_mid", "hook_resid_post")]
    return grads


def test_activation_gradients_and_attribution_patching_match_autograd(pair):
    ours, theirs = pair
    value, _, grads = attribution.activation_gradients(ours, CLEAN, METRIC)
    theirs_grads = their_gradients(theirs, set(grads))
    assert set(theirs_grads) == set(grads)
    for name in sorted(grads):
        assert_close(grads[name], theirs_grads[name], f"d metric / d {name}")

    # the estimates, rebuilt from TransformerLens' activations and gradients
    estimate = attribution.attribution_patching(ours, CLEAN, CORRUPT, METRIC)
    with torch.no_grad():
        their_clean = float(torch_metric(theirs(torch.tensor(CLEAN))))
    assert estimate["clean"] == pytest.approx(their_clean, rel=1e-4, abs=1e-4)
    _, clean = theirs.run_with_cache(torch.tensor(CLEAN))
    _, corrupt = theirs.run_with_cache(torch.tensor(CORRUPT))
    L = ours.config.n_layers
    for kind in patching.RESIDUAL:
        names = [f"blocks.{layer}.hook_{kind}" for layer in range(L)]
        expected = np.stack([np.einsum("btc,btc->t", numpy(corrupt[n]) - numpy(clean[n]), theirs_grads[n])
                             for n in names])  # (L, T)
        assert_close(estimate[kind], expected, f"attribution of {kind}", rtol=1e-3)
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(L)]
    expected = np.stack([np.einsum("bthd,bthd->h", numpy(corrupt[n]) - numpy(clean[n]), theirs_grads[n])
                         for n in names])  # (L, H)
    assert_close(estimate["heads"], expected, "attribution of heads", rtol=1e-3)


def test_direct_logit_attribution_of_heads_matches_stack_head_results(pair):
    ours, theirs = pair
    tokens = [5, 9]
    att = dla.direct_logit_attribution(ours, CLEAN, token_ids=tokens)
    _, their_cache = theirs.run_with_cache(torch.tensor(CLEAN))
    stack, labels = their_cache.stack_head_results(layer=-1, pos_slice=-1, return_labels=True,
                                                   apply_ln=True)  # (L*H, B, C): centred, / cached scale
    expected = numpy((stack * theirs.ln_final.w) @ theirs.W_U[:, tokens])  # (L*H, B, K)
    mine = np.stack([att.of(label)[:, -1] for label in labels])  # (L*H, B, K)
    assert_close(mine, expected, "direct logit attribution per head")
