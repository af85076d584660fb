"""The interpretability lab refuses bad input with an error that names the problem and the fix."""

import numpy as np
import pytest

from minitransformer.lab import attribution, detectors, dla, induction, patching, paths
from minitransformer.model import GPT
from minitransformer.trace import run_with_cache

MODEL = GPT("toy", seed=0)  # 2 layers, 4 heads, vocabulary 64
CLEAN = np.array([[3, 7, 12, 5, 9, 30, 2, 17, 4, 1]])
CORRUPT = CLEAN.copy()
CORRUPT[0, 2] = 13
METRIC = patching.LogitDiff(correct=5, incorrect=9)
HEADS = r"layer in 0\.\.1 and head in 0\.\.3 \(no negative indices\)"


@pytest.fixture(scope="module")
def caches():
    return run_with_cache(MODEL, CLEAN)[1], run_with_cache(MODEL, CORRUPT)[1]


# --------------------------------------------------------------------------- 1. senders and heads
@pytest.mark.parametrize("sender", [(0, -1), (0, 4), (0, 7), (2, 0), (9, 0), (-1, 0), (1, -4), (0.0, 1), (True, 1),
                                    (0,), "0,1", 0])
def test_a_sender_that_is_not_a_head_of_the_model_is_refused(caches, sender):
    clean, corrupt = caches
    with pytest.raises(ValueError, match=f"the sender is \\(layer, head\\) with {HEADS}"):
        paths.path_patch(MODEL, clean, corrupt, CLEAN, sender, ["logits"])


def test_a_sender_is_taken_as_a_tuple_or_a_list(caches):
    clean, corrupt = caches
    expect = paths.path_patch(MODEL, clean, corrupt, CLEAN, (0, 3), ["logits"])
    assert np.array_equal(paths.path_patch(MODEL, clean, corrupt, CLEAN, [0, np.int64(3)], ["logits"]), expect)
    assert not np.array_equal(expect, paths.path_patch(MODEL, clean, corrupt, CLEAN, (0, 0), ["logits"]))


@pytest.mark.parametrize("receiver", [(1, -4), (1, 4), (1.0, 0), (2, 0)])
def test_a_receiver_that_is_not_a_head_is_refused_the_same_way(caches, receiver):
    clean, corrupt = caches
    with pytest.raises(ValueError, match=f"a receiver is \\(layer, head\\) or 'logits' with {HEADS}"):
        paths.path_patch(MODEL, clean, corrupt, CLEAN, (0, 0), [receiver])


@pytest.mark.parametrize("layer, head", [(0, -1), (0, 4), (0, 9), (2, 0), (-1, 0)])
def test_head_z_and_head_output_refuse_a_head_the_model_does_not_have(caches, layer, head):
    x = caches[0]["blocks.0.hook_resid_pre"]  # (1, 10, C)
    with pytest.raises(ValueError, match=f"the head is \\(layer, head\\) with {HEADS}"):
        paths.head_z(MODEL, layer, head, x, x, x)
    with pytest.raises(ValueError, match=HEADS):
        paths.head_output(MODEL, layer, head, np.zeros((1, 10, MODEL.config.d_head)))


def test_the_course_model_refuses_a_negative_head_that_would_have_been_head_0():
    from minitransformer.cli import load_course_model

    model, tok, _ = load_course_model()
    ids = np.array([tok.encode("(a[b]c)")])
    clean, corrupt = run_with_cache(model, ids)[1], run_with_cache(model, ids[:, ::-1])[1]
    with pytest.raises(ValueError, match=r"layer in 0\.\.3 and head in 0\.\.3"):
        paths.path_patch(model, clean, corrupt, ids, (3, -4), ["logits"])


# --------------------------------------------------------------------------- 2. prompts of different lengths
@pytest.mark.parametrize("run", [
    lambda c, k: paths.direct_effects(MODEL, c, k, METRIC),
    lambda c, k: paths.path_patch_senders(MODEL, c, k, [(1, 0)], METRIC),
    lambda c, k: paths.senders_by_input(MODEL, c, k, (1, 0), METRIC),
    lambda c, k: attribution.attribution_patching(MODEL, c, k, METRIC),
    lambda c, k: patching.patching_experiment(MODEL, c, k, METRIC),
], ids=["direct_effects", "path_patch_senders", "senders_by_input", "attribution_patching", "patching_experiment"])
def test_clean_and_corrupted_prompts_of_different_lengths_are_refused_before_any_run(run):
    with pytest.raises(ValueError, match=r"clean_ids has shape \(1, 10\) but corrupted_ids \(1, 5\); clean and "
                                         "corrupted prompts must have the same number of tokens"):
        run(CLEAN, CORRUPT[:, :5])
    with pytest.raises(ValueError, match="the same number of prompts"):
        run(CLEAN, np.concatenate([CORRUPT, CORRUPT]))


def test_path_patch_refuses_caches_of_different_runs(caches):
    clean, corrupt = caches
    short = run_with_cache(MODEL, CORRUPT[:, :5])[1]
    with pytest.raises(ValueError, match=r"the clean run has shape \(1, 10\) but the corrupted run \(1, 5\); "
                                         "clean and corrupted prompts must have the same number of tokens"):
        paths.path_patch(MODEL, clean, short, CLEAN, (0, 0), ["logits"])
    with pytest.raises(ValueError, match=r"give the cache of run_with_cache\(model, clean_ids\)"):
        paths.path_patch(MODEL, clean, corrupt, CLEAN[:, :5], (0, 0), ["logits"])


def test_senders_by_input_refuses_bad_inputs_even_without_senders():
    with pytest.raises(ValueError, match="inputs='x'"):
        paths.senders_by_input(MODEL, CLEAN, CORRUPT, (0, 1), METRIC, inputs="x")  # layer 0: no sender upstream


# --------------------------------------------------------------------------- 3. one sequence, not a batch
ONE, ONE_CORRUPT = CLEAN[0], CORRUPT[0]
CALLS = {
    "patch": lambda c: patching.patch(MODEL, ONE, c, "blocks.0.hook_resid_pre"),
    "patch_many": lambda c: patching.patch_many(MODEL, ONE, c, ["blocks.0.hook_resid_pre"]),
    "patch_residual": lambda c: patching.patch_residual(MODEL, ONE, c, METRIC),
    "patch_heads": lambda c: patching.patch_heads(MODEL, ONE, c, METRIC),
    "patch_heads_by_position": lambda c: patching.patch_heads_by_position(MODEL, ONE, c, METRIC),
    "patching_experiment": lambda c: patching.patching_experiment(MODEL, ONE, ONE_CORRUPT, METRIC),
    "path_patch": lambda c: paths.path_patch(MODEL, c, c, ONE, (0, 0), ["logits"]),
    "path_patch_senders": lambda c: paths.path_patch_senders(MODEL, ONE, ONE_CORRUPT, ["logits"], METRIC),
    "direct_effects": lambda c: paths.direct_effects(MODEL, ONE, ONE_CORRUPT, METRIC),
    "senders_by_input": lambda c: paths.senders_by_input(MODEL, ONE, ONE_CORRUPT, (1, 0), METRIC),
    "activation_gradients": lambda c: attribution.activation_gradients(MODEL, ONE, METRIC),
    "attribution_patching": lambda c: attribution.attribution_patching(MODEL, ONE, ONE_CORRUPT, METRIC),
    "direct_logit_attribution": lambda c: dla.direct_logit_attribution(MODEL, ONE),
    "logit_diff_attribution": lambda c: dla.logit_diff_attribution(MODEL, ONE, 5, 9),
    "head_scores": lambda c: detectors.head_scores(MODEL, ONE),
    "duplicate_token_targets": lambda c: detectors.duplicate_token_targets(ONE),
    "induction_targets": lambda c: detectors.induction_targets(ONE),
    "in_context_losses": lambda c: induction.in_context_losses(MODEL, ONE),
}


@pytest.mark.parametrize("name", CALLS)
def test_one_sequence_is_refused_with_the_models_advice_to_wrap_it(caches, name):
    with pytest.raises(ValueError, match=r"must be 2-D \(batch, time\); got shape \(10,\): "
                                         r"wrap one sequence as \w+\[None, :\]"):
        CALLS[name](caches[0])


def test_one_sequence_wrapped_as_the_message_says_runs(caches):
    logits = run_with_cache(MODEL, ONE[None, :])[0]
    assert np.array_equal(patching.patch(MODEL, ONE[None, :], caches[0], "blocks.0.hook_resid_pre"), logits)
    assert patching.patch_residual(MODEL, ONE[None, :], caches[1], METRIC).shape == (2, 10)


def test_a_3d_batch_is_refused_without_the_advice_for_one_sequence():
    with pytest.raises(ValueError, match=r"ids must be 2-D \(batch, time\); got shape \(1, 1, 10\)$"):
        dla.direct_logit_attribution(MODEL, CLEAN[None])


# --------------------------------------------------------------------------- 4. train_induction
SMALL = dict(batch=4, eval_batch=4, config=induction.attention_only_config(vocab=16, half=4, d_model=16, n_heads=2))


def test_eval_every_0_scores_only_at_the_end_of_the_same_training():
    only_end = induction.train_induction(steps=3, eval_every=0, **SMALL)
    every = induction.train_induction(steps=3, eval_every=2, **SMALL)
    assert only_end.steps == [3] and every.steps == [0, 2, 3]
    assert only_end.loss_second == every.loss_second[-1:] and only_end.induction == every.induction[-1:]
    assert only_end.phase_change() == 3


@pytest.mark.parametrize("bad, message", [
    (dict(steps=-3), "steps=-3 must be a positive int"), (dict(steps=0), "steps=0 must be a positive int"),
    (dict(steps=2.5), "steps=2.5 must be a positive int"), (dict(steps=True), "steps=True must be a positive int"),
    (dict(eval_every=-1), r"eval_every=-1 must be an int >= 0 \(0: score only at the end\)"),
    (dict(eval_every=0.5), "eval_every=0.5 must be an int >= 0"), (dict(batch=0), "batch=0 must be a positive int"),
    (dict(lr=float("nan")), "lr=nan must be a finite number > 0"), (dict(lr=float("inf")), "lr=inf must be a finite"),
    (dict(lr=0.0), "lr=0.0 must be a finite number > 0"), (dict(lr=-1e-3), "lr=-0.001 must be"),
    (dict(lr="1e-3"), "lr='1e-3' must be a finite number > 0"),
])
def test_train_induction_refuses_bad_settings_before_training(bad, message):
    with pytest.raises(ValueError, match=message):
        induction.train_induction(**{"steps": 2, **SMALL, **bad})


# --------------------------------------------------------------------------- 5. the metric's token ids
@pytest.mark.parametrize("correct, incorrect", [(-1, 0), (5, -2), ([5, -1], 0)])
def test_logit_diff_refuses_negative_token_ids_when_made(correct, incorrect):
    with pytest.raises(ValueError, match=r"is not a token id: ids are 0\.\.vocab_size-1 \(a negative id would read"):
        patching.LogitDiff(correct=correct, incorrect=incorrect)


@pytest.mark.parametrize("correct", [2.0, "a", [[1]], True, []])
def test_logit_diff_refuses_what_is_not_a_token_id(correct):
    with pytest.raises(ValueError, match=f"correct={correct!r} must be a token id".replace("[", r"\[").replace("]", r"\]")):
        patching.LogitDiff(correct=correct, incorrect=0)


def test_logit_diff_refuses_ids_the_vocabulary_lacks_rows_it_lacks_and_positions_outside_the_prompt():
    logits = np.random.default_rng(0).normal(size=(2, 3, 50))
    too_big = patching.LogitDiff(correct=50, incorrect=0)
    for apply in (too_big, too_big.grad):
        with pytest.raises(ValueError, match=r"correct=50 is not a token id: ids are 0\.\.49"):
            apply(logits)
    with pytest.raises(ValueError, match=r"incorrect=\[1, 60\] holds 60, which is not a token id: ids are 0\.\.49"):
        patching.LogitDiff(correct=[5, 8], incorrect=[1, 60])(logits)
    with pytest.raises(ValueError, match="correct has 3 ids but the logits 2 rows"):
        patching.LogitDiff(correct=[5, 8, 9], incorrect=0)(logits)
    with pytest.raises(ValueError, match=r"position=3 must be an int in -3\.\.2"):
        patching.LogitDiff(correct=5, incorrect=0, position=3)(logits)
    per_row = patching.LogitDiff(correct=np.array([5, 8]), incorrect=np.int64(9), position=-2)
    assert per_row(logits) == pytest.approx(np.mean(logits[[0, 1], 1, [5, 8]] - logits[:, 1, 9]))


def test_direct_logit_attribution_refuses_token_ids_outside_the_vocabulary():
    with pytest.raises(ValueError, match=r"token_ids=\[5, -1\] holds -1, which is not a token id: ids are 0\.\.63"):
        dla.direct_logit_attribution(MODEL, CLEAN, token_ids=[5, -1])
    with pytest.raises(ValueError, match=r"correct=64 is not a token id: ids are 0\.\.63"):
        dla.logit_diff_attribution(MODEL, CLEAN, correct=64, incorrect=9)
    with pytest.raises(ValueError, match=r"incorrect=\[9\] must be a token id: an int"):
        dla.logit_diff_attribution(MODEL, CLEAN, correct=5, incorrect=[9])
    with pytest.raises(ValueError, match=r"position=10 must be an int in -10\.\.9"):
        dla.logit_diff_attribution(MODEL, CLEAN, correct=5, incorrect=9, position=10)
