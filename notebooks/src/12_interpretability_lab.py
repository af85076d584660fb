# Source of notebooks/12_interpretability_lab.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 12_interpretability`.

# %% [markdown]
# # An interpretability lab · *which part computed the answer?*
#
# The earlier notebooks opened each stage and looked at what it produced. Looking
# is not explaining: a head may attend somewhere and change nothing. This
# notebook asks causal questions instead, with the tools of mechanistic
# interpretability, all written in numpy on top of the model's published
# activation names and its own hand-written backward pass:
#
# - **activation patching**: rerun a prompt with one activation taken from
#   another prompt, and measure what changes;
# - **attribution patching**: estimate every patch at once from one backward pass;
# - **direct logit attribution**: split the logits into what each component wrote;
# - **path patching**: follow one head's effect along one path only;
# - **head detectors**, and a small model in which induction heads form while you watch.
#
# Everything runs offline, seeded, in well under two minutes, top to bottom.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import matplotlib
import numpy as np

from minitransformer import figures
from minitransformer.cli import load_course_model
from minitransformer.core.config import ModelConfig
from minitransformer.lab import attribution, detectors, dla, induction, patching, paths
from minitransformer.model import GPT

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small on the web
np.set_printoptions(precision=2, suppress=True, linewidth=110)

model, tok, meta = load_course_model()  # data/course, as `minitransformer demo` loads it
print(model)

# %% [markdown]
# ## 1. The concept: an answer has a cause
#
# The pipeline *retrieves* (attention) and *processes* (the MLPs), writing
# everything into one residual stream. When the model gets an answer right, some
# of those reads and writes carried it. To find which, change the input just
# enough to change the answer (a **clean** and a **corrupted** prompt), and ask
# of each activation: if I put back its clean value into the corrupted run, does
# the clean answer come back? An activation that restores the answer on its own
# carries it. This is an experiment, not an observation: it measures what a
# component *does*, where an attention pattern only shows where it *looks*.
#
# The answer is read off a **metric**. The usual one is the logit difference
# between the correct next token and a plausible wrong one at the last position;
# it is linear in the logits, does not saturate like a probability, and ignores
# everything else the model predicts. You can choose another: any function of the
# logits works for patching (attribution patching also needs its gradient).

# %% [markdown]
# ## 2. The mechanism
#
# With $a$ one activation (a slice of a named hook point), $m$ the metric, and
# $\text{run}(x \mid a \leftarrow a')$ a run on prompt $x$ with $a$ replaced:
#
# $$
# \text{denoising: } m\big(\text{run}(x_\text{corr} \mid a \leftarrow a_\text{clean})\big),
# \qquad
# \text{noising: } m\big(\text{run}(x_\text{clean} \mid a \leftarrow a_\text{corr})\big).
# $$
#
# Normalised, $0$ is the corrupted metric and $1$ the clean one. **Attribution
# patching** replaces each noising run by its first-order Taylor estimate, taken
# with one backward pass on the clean run:
#
# $$
# m(\text{clean with } a_\text{corr}) \approx m(\text{clean}) + (a_\text{corr} - a_\text{clean}) \cdot \frac{\partial m}{\partial a}.
# $$
#
# **Direct logit attribution** uses that the final stream is a sum,
# $x = \text{embed} + \text{pos} + \sum_{l}\big(\sum_h z_{lh} W_O^{h} + b_O^{l} + \text{mlp}_l\big)$.
# Freezing the final LayerNorm's scale $s$ at its value in the run makes the head
# linear, and each term $x_k$ gets its share $\big((x_k - \bar{x}_k)/s\big)\, w\, W_U$;
# the norm's bias $b\,W_U$ is a term of its own. The shares add up to the logits exactly.

# %% [markdown]
# ## 3. By hand: tiny patterns with known answers
#
# A head detector scores how much attention a head puts on a set of target keys.
# On the repeated sequence `4 5 6 4 5 6`, a previous-token head looks one back; an
# induction head, at the second `4`, looks at what followed the first `4` (the
# `5`, two back); a duplicate-token head looks at the first `4` itself.

# %%
T = 6
toy_ids = np.array([[4, 5, 6, 4, 5, 6]])
previous = np.eye(T, k=-1)
previous[0, 0] = 1.0  # position 0 can only attend to itself
inducting = np.zeros((T, T))
inducting[:3, 0] = 1.0  # nothing to copy yet: park on position 0
for t in range(3, T):
    inducting[t, t - 2] = 1.0  # the token after the earlier copy
toy_pattern = np.stack([previous, inducting])[None]  # (B=1, H=2, T, T)
print("previous-token score:", detectors.previous_token_score(toy_pattern))
print("induction score:     ", detectors.induction_score(toy_pattern, toy_ids))
print("attention sink:      ", detectors.attention_sink_score(toy_pattern))

# %% [markdown]
# And direct logit attribution on a small random model (float32 weights; the
# attribution sums in float64): the contributions of the embeddings, every head,
# every bias and every MLP sum to the logits up to float32 rounding.

# %%
toy = GPT(ModelConfig.preset("toy"), seed=0)
att = dla.direct_logit_attribution(toy, np.array([[1, 2, 3, 4, 5]]))  # components: att.labels
print("largest |sum - logits|:", np.abs(att.total() - toy.forward(np.array([[1, 2, 3, 4, 5]]))).max())

# %% [markdown]
# ## 4. The course model: which bracket closes?
#
# The course model was trained on Python's documentation, so it has seen many
# tuples and lists. After `x = (1, 2, 3` it should close with `)`, after
# `x = [1, 2, 3` with `]`. The two prompts differ in one token, at position 2;
# the answer is needed at the last position, seven tokens later. Something has to
# carry "an open parenthesis" from there to here.

# %%
clean_text, corrupted_text = "x = (1, 2, 3", "x = [1, 2, 3"
clean_ids = np.array([tok.encode_ordinary(clean_text)])
corrupted_ids = np.array([tok.encode_ordinary(corrupted_text)])
labels = [tok.decode([i]) for i in clean_ids[0]]
close_paren, close_bracket = tok.encode_ordinary(")")[0], tok.encode_ordinary("]")[0]
metric = patching.LogitDiff(correct=close_paren, incorrect=close_bracket)
logits, cache = model.run_with_cache(clean_ids)
clean_value, corrupted_value = metric(logits), metric(model.forward(corrupted_ids))
print("tokens:", labels)
print(f"logit[')'] - logit[']']: clean {clean_value:.2f}, corrupted {corrupted_value:.2f}")

# %%
result = patching.patching_experiment(model, clean_ids, corrupted_ids, metric)
print("residual stream before each layer (0 = corrupted, 1 = clean):\n", result["resid_pre"])
print("each head, all positions:\n", result["heads"])

# %% [markdown]
# Read the residual stream map by rows. Before layer 0 only position 2 differs,
# so only it can matter, and it restores everything. Before layer 1 the
# information has moved: the last position alone restores all of it. So layer 0's
# attention carried it, and the heads map says which head: one layer-0 head
# restores most of the difference by itself.

# %% [markdown]
# ## 5. Seeing it
#
# The same results drawn, blue for restoring the clean answer, red for pushing
# the other way (a diverging map centred on zero).

# %%
figures.lab.layer_position_map(result["resid_pre"], labels, title="patching the residual stream (denoising)",
                           colorbar="fraction of the clean answer restored")

# %%
figures.lab.layer_head_map(result["heads"], title="patching each head's output", colorbar="fraction restored")

# %% [markdown]
# **Attribution patching** estimates all the noising patches from one forward
# and one backward pass (the model's own `backward`, asked for the gradients of
# the activations through its `on_grad` callback). Compared with the real noising
# patches, it is close here: one token changed, and no head's pattern flips.
# With bigger corruptions, where attention saturates or flips, it can be far off.

# %%
estimate = attribution.attribution_patching(model, clean_ids, corrupted_ids, metric)
_, corrupted_cache = model.run_with_cache(corrupted_ids)
actual = patching.patch_heads(model, clean_ids, corrupted_cache, metric) - estimate["clean"]
print("estimated change per head:\n", estimate["heads"])
print("actual change per head:\n", actual)
figures.lab.attribution_vs_patching(estimate["heads"], actual, title="heads: estimate vs actual (noising)")

# %% [markdown]
# **Direct logit attribution** asks a different question: which components
# write the logit difference *directly* into the last position's stream? A head
# can matter a lot in patching and little here, if it works through later layers.

# %%
diff = dla.logit_diff_attribution(model, clean_ids, close_paren, close_bracket)
print("the parts sum to the logit difference:", np.isclose(diff.total()[0], clean_value, atol=1e-3))
figures.lab.logit_attribution_bars(diff.labels, diff.values[:, 0], k=12, title="direct contributions to logit[')'] - logit[']']")

# %% [markdown]
# **Path patching** separates a head's effect by route. Below, for every head,
# only its *direct* path to the logits is corrupted (every block in between keeps
# its clean value), and then only the paths into the queries, keys and values of
# L3H0, the head that matters most after L0H1. L3H0 acts directly on the logits,
# but no earlier head sends it much: what it reads about the bracket is probably
# still in position 2's stream (the residual map's third column), written there
# by the embedding rather than by a head. An exercise for the curious: check it.

# %%
direct = paths.direct_effects(model, clean_ids, corrupted_ids, metric) - clean_value
print("change of the metric through each head's direct path only:\n", direct)
receiver = (3, 0)
via = paths.path_patch_senders(model, clean_ids, corrupted_ids, [receiver], metric, inputs="qkv") - clean_value
print(f"... through the inputs of L{receiver[0]}H{receiver[1]} only (NaN: not upstream):\n", via)

# %% [markdown]
# ## 6. Watch induction heads form
#
# The course model is small and briefly trained; its heads are not clean textbook
# heads. Induction heads (the circuit `[A][B] ... [A] -> [B]`) form reliably in a
# two-layer **attention-only** model trained on sequences whose end repeats an
# earlier stretch (Olsson et al., 2022). Layer 0 learns to look at the previous
# token, layer 1 uses that to find what followed the earlier copy. Olsson et al.
# saw this happen abruptly, a *phase change*; in this small run both scores
# climb steadily over a few hundred steps instead, and `run.phase_change()` marks
# the step where the induction score passes half-way to its best. The loss counts
# only the repeated stretch (the rest is unpredictable), so the loss on the first
# half of a test sequence is never trained: it *rises* as the model grows
# confident in copying, which is no help where there is nothing yet to copy.
# About ten seconds:

# %%
run = induction.train_induction(steps=600, seed=0)
step = run.phase_change()
i = run.steps.index(step)
print(f"phase change at step {step}: induction score {run.induction[0]:.2f} at the start, "
      f"{run.induction[max(i - 2, 0)]:.2f} just before, {run.induction[-1]:.2f} after training")
figures.lab.induction_over_training(run)

# %% [markdown]
# The scores of every head of the trained model, and the pattern of the best
# induction head on a repeated random sequence: a stripe one after the diagonal
# of the earlier copy.

# %%
print("induction scores (layers x heads):\n", run.scores["induction"])
print("previous-token scores:\n", run.scores["previous_token"])
seq = detectors.repeated_random_tokens(np.random.default_rng(5), 1, 10, run.model.config.vocab_size)
_, small_cache = run.model.run_with_cache(seq)
best = int(np.argmax(run.scores["induction"][1]))
figures.lab.head_pattern(small_cache["pattern", 1][0, best], seq[0].tolist(), title=f"L1H{best} on a repeat")

# %% [markdown]
# ## 7. Pitfalls
#
# - **Same length, same positions.** Patching position by position needs the
#   two prompts to tokenize to the same length, with the difference where you
#   think it is. Check the tokens, not the text.
# - **A metric that saturates.** Probabilities stop moving once near 0 or 1; a
#   logit difference keeps measuring. Normalise (0 = corrupted, 1 = clean) to
#   compare experiments.
# - **Denoising is not noising.** Restoring one activation in the corrupted run
#   finds what is *sufficient*; destroying it in the clean run finds what is
#   *necessary*. Redundant heads show up in one and not the other.
# - **Attribution patching is linear.** Where attention saturates or a norm
#   rescales, the estimate can miss by a lot (section 5). Use it to choose what to
#   patch, then patch.
# - **Direct is not total.** DLA ignores everything a component does through
#   later layers, and freezes the final norm's scale.
# - **Head-major shapes.** `hook_q/k/v` are (B, H, T, D) here, (B, T, H, D) in TransformerLens (`docs/hooks.md`).

# %% [markdown]
# ## 8. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`
# (or leaves `None`), and its check prints *not done yet*, so the notebook still
# runs top to bottom. Worked solutions are in
# `notebooks/solutions/12_interpretability_lab_solutions.ipynb`.
#
# - **core 1**: the logit difference metric.
# - **core 2**: a previous-token detector.
# - **optional 3**: one head's direct logit attribution, by hand.
# - **stretch 4**: find the heads that matter for a prompt of your choice.

# %%
def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# **Core 1.** Write `my_logit_diff(logits, correct, incorrect)`: `logits` is
# (B, T, V); return the mean over the batch of `logit[correct] - logit[incorrect]`
# at the last position, a float.

# %%
def my_logit_diff(logits, correct, incorrect):
    raise NotImplementedError  # your code here


def test_my_logit_diff():
    assert np.isclose(my_logit_diff(logits, close_paren, close_bracket), metric(logits), atol=1e-5)
    rng = np.random.default_rng(0)
    batch = rng.normal(size=(3, 4, 10))
    expected = np.mean(batch[:, -1, 7] - batch[:, -1, 2])
    assert np.isclose(my_logit_diff(batch, 7, 2), expected), "the last position, averaged over the batch"


check("core 1 (my_logit_diff)", test_my_logit_diff)

# %% [markdown]
# **Core 2.** Write `my_previous_token_score(pattern)` for one layer's pattern
# (B, H, T, T): for each head, the mean over the batch and over queries
# $t \ge 1$ of the attention on key $t - 1$. Return (H,).

# %%
def my_previous_token_score(pattern):
    raise NotImplementedError  # your code here


def test_my_previous_token_score():
    assert np.allclose(my_previous_token_score(toy_pattern), [1.0, 0.2]), "query 0 has no previous token"
    for layer in range(model.config.n_layers):
        p = cache["pattern", layer]
        assert np.allclose(my_previous_token_score(p), detectors.previous_token_score(p), atol=1e-6), f"layer {layer}"


check("core 2 (my_previous_token_score)", test_my_previous_token_score)

# %% [markdown]
# **Optional 3.** Write `my_head_dla(layer, head, token)`: the direct
# contribution of one head to the logit of `token` at the last position of the
# clean prompt, the final LayerNorm's scale frozen. Use `cache` (the clean run):
# the head's output is `z[:, :, head] @ W_O[head*D:(head+1)*D]`; center it over
# the width, divide by `cache["ln_final.hook_scale"]`, multiply by the norm's
# gain `w`, then take the dot product with the token's row of `W_E` (the head is tied).

# %%
def my_head_dla(layer, head, token):
    raise NotImplementedError  # your code here


def test_my_head_dla():
    full = dla.direct_logit_attribution(model, clean_ids, token_ids=[close_paren])
    for layer, head in [(0, 1), (3, 0), (2, 3)]:
        expected = full.of(f"L{layer}H{head}")[0, -1, 0]
        assert np.isclose(my_head_dla(layer, head, close_paren), expected, atol=1e-4), f"L{layer}H{head}"


check("optional 3 (my_head_dla)", test_my_head_dla)

# %% [markdown]
# **Stretch 4.** Find the heads that matter for a prompt of your choice. Pick a
# clean and a corrupted prompt of the same number of tokens, whose answers (one
# token each) differ, and where the course model prefers the right one on the
# clean prompt. Run `patching.patch_heads` (denoising) and choose at most three
# heads `my_heads = [(layer, head), ...]` which, patched together from the clean
# run into the corrupted one, restore at least half of the logit difference.

# %%
my_clean, my_corrupted = None, None  # two strings
my_correct, my_incorrect = None, None  # the answers, one token each
my_heads = None  # a list of (layer, head)


def test_my_heads():
    if my_heads is None or my_clean is None:
        raise NotImplementedError
    a, b = np.array([tok.encode_ordinary(my_clean)]), np.array([tok.encode_ordinary(my_corrupted)])
    assert a.shape == b.shape, f"the prompts tokenize to {a.shape[1]} and {b.shape[1]} tokens: make them equal"
    right, wrong = tok.encode_ordinary(my_correct), tok.encode_ordinary(my_incorrect)
    assert len(right) == len(wrong) == 1, "each answer must be exactly one token"
    m = patching.LogitDiff(right[0], wrong[0])
    clean_logits, clean_cache = model.run_with_cache(a)
    clean, corrupted = m(clean_logits), m(model.forward(b))
    assert clean > 0 and clean - corrupted > 0.5, f"clean {clean:.2f}, corrupted {corrupted:.2f}: choose a clearer pair"
    assert 1 <= len(my_heads) <= 3, "at most three heads"

    def restore(layer):
        heads = [h for l, h in my_heads if l == layer]

        def put(z):
            z = z.copy()
            z[:, :, heads] = clean_cache[f"blocks.{layer}.attn.hook_z"][:, :, heads]
            return z
        return put

    hooks = {f"blocks.{l}.attn.hook_z": restore(l) for l in {l for l, _ in my_heads}}
    restored = (m(model.run_with_hooks(b, hooks)) - corrupted) / (clean - corrupted)
    assert restored >= 0.5, f"these heads restore {restored:.0%} of the difference; look for others"


check("stretch 4 (my_heads)", test_my_heads)

# %% [markdown]
# ## 9. Further reading
#
# - Kevin Meng et al. (2022). *Locating and Editing Factual Associations in GPT.*
#   Causal tracing: patching the residual stream (arXiv:2202.05262).
# - Kevin Wang et al. (2022). *Interpretability in the Wild: a Circuit for
#   Indirect Object Identification in GPT-2 small.* Logit difference, path
#   patching (arXiv:2211.00593).
# - Neel Nanda (2023). *Attribution Patching: Activation Patching At Industrial
#   Scale*; Aaquib Syed, Can Rager, Arthur Conmy (2023). *Attribution Patching
#   Outperforms Automated Circuit Discovery* (arXiv:2310.10348).
# - Nelson Elhage et al. (2021). *A Mathematical Framework for Transformer
#   Circuits*; Catherine Olsson et al. (2022). *In-context Learning and Induction
#   Heads* (transformer-circuits.pub).
#
# In the package: `minitransformer/lab/` (one file per tool), `figures/lab.py`,
# `model.backward`'s `on_grad` callback, and `docs/hooks.md` (every name).
