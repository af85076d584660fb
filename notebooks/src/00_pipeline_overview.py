# Source of notebooks/00_pipeline_overview.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 00_pipeline`.

# %% [markdown]
# # Overview · the whole pipeline on one sentence
#
# A transformer language model is one pipeline of five stages: it takes text,
# and returns a guess for the text that comes next. This notebook follows one
# sentence through the **course model** (a small GPT trained by this project on
# the Python language reference), one stage at a time, with what each stage
# computes, the arrays it produces and a figure of each. The stage notebooks
# (`01_` to `06_`) then take the stages one by one.
#
# Everything runs offline in a few seconds. Run the cells top to bottom.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import matplotlib
import numpy as np
from IPython.display import display

from minitransformer.core import nn
from minitransformer import figures
from minitransformer.cli import load_course_model
from minitransformer.concepts import STAGES
from minitransformer.trace.pipeline import Pipeline
from minitransformer.trace import hook_table
from minitransformer.trace.lens import logit_lens

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small and readable on the web
np.set_printoptions(precision=3, suppress=True)

# %% [markdown]
# ## 1. The concept: five stages, five questions of information retrieval
#
# Each stage of the pipeline is paired with a concept from information
# retrieval, the question it answers about the text. The pairing lives in one
# table in the package (`minitransformer/concepts.py`); every notebook, figure
# and the demo read it from there.

# %%
for s in STAGES:
    print(f"{s.number}. {s.name} ({s.module}.py)  ->  {s.concept}: {s.question}")
    print(f"   {s.data_in}  ->  {s.data_out}")
    print(f"   {s.summary}\n")

# %% [markdown]
# ## 2. The mechanism, in equations
#
# For ids $t_1 \dots t_T$, a GPT with $L$ blocks computes
#
# $$
# \begin{aligned}
# x^{(0)}_i &= W_E[t_i] + W_{pos}[i] && \text{(embedding: classification; positions: indexing)}\\
# x^{(\ell+\frac12)} &= x^{(\ell)} + \operatorname{Attn}_\ell\big(\operatorname{LN}(x^{(\ell)})\big) && \text{(retrieval)}\\
# x^{(\ell+1)} &= x^{(\ell+\frac12)} + \operatorname{MLP}_\ell\big(\operatorname{LN}(x^{(\ell+\frac12)})\big) && \text{(processing)}\\
# p(t_{i+1} \mid t_{\le i}) &= \operatorname{softmax}\big(\operatorname{LN}(x^{(L)}_i)\, W_E^{\top} / \tau\big) && \text{(output head, tied to } W_E)
# \end{aligned}
# $$
#
# with attention $\operatorname{Attn}(x) = \operatorname{softmax}\!\big(q k^{\top} / \sqrt{d} + \text{causal mask}\big)\, v$,
# $q = x W_Q$, $k = x W_K$, $v = x W_V$ per head. The vector $x_i$ that every
# stage reads and adds to is the **residual stream**; its shape, $(B, T, C)$,
# stays the same from the embedding to the head.

# %% [markdown]
# ## 3. The whole pipeline by hand, on 6 tokens × 3 dimensions
#
# Before the real model, the same equations on arrays small enough to read: a
# six-word vocabulary, width $C = 3$, one block with one attention head whose
# $W_Q = W_K = W_V$ are the identity, and no norms or MLP. Every number is printed.

# %%
rng = np.random.default_rng(0)
vocab = ["the", "cat", "sat", "on", "mat", "."]
ids_small = np.array([0, 1, 2, 3, 0, 4])  # "the cat sat on the mat", T = 6
W_E_small = rng.normal(0, 1, size=(6, 3)).round(1)  # (V, C) = (6, 3): one row per word
W_pos_small = rng.normal(0, 0.5, size=(6, 3)).round(1)  # (T, C) = (6, 3): one row per position

x = W_E_small[ids_small] + W_pos_small  # (6,) -> (6, 3): classification, then indexing
scores = x @ x.T / np.sqrt(3)  # (6, 3) @ (3, 6) -> (6, 6): every query against every key
scores[np.triu_indices(6, k=1)] = -np.inf  # causal: a position sees only itself and the past
pattern = nn.softmax(scores)  # (6, 6): each row sums to 1
x = x + pattern @ x  # retrieval, added to the residual stream
logits = x @ W_E_small.T  # (6, 3) @ (3, 6) -> (6, V): tied head, W_E read backwards
probs = nn.softmax(logits)

print("attention pattern (row = query position, column = key position):")
print(pattern.round(2))
print("\nmost likely next word after each position:")
for t in range(6):
    print(f"  after {' '.join(vocab[i] for i in ids_small[:t + 1])!r:<26} -> {vocab[int(np.argmax(probs[t]))]!r}"
          f" ({probs[t].max():.0%})")

# %% [markdown]
# The weights are random, so the guesses mean nothing yet: training is what
# makes them mean something. The shapes are already the real ones: ids $(T,)$,
# residual stream $(T, C)$, pattern $(T, T)$ per head, logits $(T, V)$.

# %% [markdown]
# ## 4. The course model, one stage at a time
#
# The course model ships with the repository (`data/course/`): the `tiny`
# preset, 4 layers of width 128 with 4 heads, trained by
# `minitransformer train` on the Python reference, with its 1,024-token
# tokenizer. `Pipeline(tokenizer, model).steps(text)` runs it on a text and
# yields the steps in the order the data flows. Each step knows its stage and
# concept, can `describe()` itself in words and `show()` a figure, and carries
# the arrays it produced (from the model's own forward cache).

# %%
model, tok, meta = load_course_model()
print(model)
extra = meta.get("extra", {})
for key in ("val_loss", "val_loss_all_windows", "unigram_baseline", "steps"):
    if key in extra:
        print(f"  {key}: {extra[key]:.3f}" if isinstance(extra[key], float) else f"  {key}: {extra[key]}")

sentence = "The return statement leaves the current function call with"
steps = Pipeline(tok, model).steps(sentence)  # a generator: one step per next()

# %% [markdown]
# **Step 1, tokenization (distinction).** The text becomes chunks, bytes, merges
# and finally ids: the units the model tells apart.

# %%
step = next(steps)
print(step.describe())
step.show()

# %% [markdown]
# **Step 2, embedding (classification).** Each id picks its row of $W_E$. The
# step lists, for each token, the tokens whose rows are closest: the class the
# model put it in. The figure places the sentence's tokens on a 2-D map of the
# whole table.

# %%
step = next(steps)
print(step.describe())
print("\nhook_embed:", step.arrays["hook_embed"].shape, "(B, T, C)")
step.show()

# %% [markdown]
# **Step 3, positional encoding (indexing).** The course model learned one
# vector per position ($W_{pos}$), added to the token's vector. The figure
# shows those learned rows of $W_{pos}$, one per position of the sentence;
# notebook 03 compares them with the sinusoidal code.

# %%
step = next(steps)
print(step.describe())
print("\nhook_pos_embed:", step.arrays["hook_pos_embed"].shape, "(T, C)")
step.show()

# %% [markdown]
# **Step 4, attention (retrieval), one step per layer.** Each head of each
# layer turns every position into a query, matches it against the keys of the
# positions up to it, and retrieves a weighted mix of their values. Rows of a
# pattern are queries (they sum to 1), columns are keys; the upper triangle is
# empty because no position may look at the future.

# %%
step = next(steps)
print(step.describe())
step.show()

# %% [markdown]
# The other layers, in the same way:

# %%
for _ in range(model.config.n_layers - 1):
    step = next(steps)
    print(step.describe(), "\n")
    display(step.show())

# %% [markdown]
# **Step 5, feed-forward and output (processing).** The MLP of each block
# processes every position on its own; after the last block the final norm and
# the tied head score every token of the vocabulary as the next one. The
# *logit lens* lines read the same guess off the residual stream after each
# block, so you can see when the prediction forms.

# %%
step = next(steps)
print(step.describe())
step.show()

# %% [markdown]
# That was the last step: the generator is exhausted.

# %%
print("steps left:", list(steps))

# %% [markdown]
# The whole course model also fits on one page of plain numpy:
# [`minitransformer/one_page.py`](../minitransformer/one_page.py) computes these same
# logits from the loaded parameters in about 130 lines, one equation per line, and a
# test keeps it equal to the package. Read it in one sitting after this notebook.
#
# ## 5. The cache behind the steps
#
# The steps are not a second computation: they are read from one forward pass,
# `model.run_with_cache(ids)`, which returns the logits and every intermediate
# array under a stable name (the TransformerLens convention; the table is in
# `docs/hooks.md`). Here is the path of the data through the names, with shapes.

# %%
ids = np.array([tok.encode(sentence)])  # (B, T) = (1, T)
logits, cache = model.run_with_cache(ids)
print(f"ids {ids.shape}: {ids[0].tolist()}\n")
for row in hook_table(model.config):
    name = row["name"].replace("{i}", "0")
    if name in cache:
        print(f"{name:<32} {str(cache[name].shape):<18} {row['concept']:<15} {row['meaning']}")
print(f"\n... and the same for blocks 1..{model.config.n_layers - 1}: {len(cache)} arrays in all")
print("shorthand: cache['pattern', 0] is", cache["pattern", 0].shape)

# %% [markdown]
# The trace and the cache agree exactly, and both agree with a plain forward pass:

# %%
trace = Pipeline(tok, model).trace(sentence)
assert np.array_equal(trace[-1].arrays["hook_logits"], logits)
assert np.allclose(model.forward(ids), logits, atol=1e-5)
print("trace logits == cache logits == model.forward(ids): yes")

# %% [markdown]
# ## 6. Figures: all attention patterns at once, and the continuation
#
# Stacking `hook_pattern` of every layer gives the layers × heads grid. Heads
# that put all their weight on the diagonal attend to the current token; heads
# with a bright first column park their attention on the first token when
# nothing else is needed; a bright sub-diagonal is a "previous token" head.

# %%
labels = [tok.decode([i]) for i in ids[0].tolist()]
patterns = np.stack([cache["pattern", layer][0] for layer in range(model.config.n_layers)])  # (L, H, T, T)
figures.attention_patterns(patterns, labels, title="the course model's attention on the sentence")

# %% [markdown]
# The pipeline ends where it started, in text: the next id is sampled from the
# probabilities, appended, and the whole pipeline runs again (with a KV cache
# storing the keys and values already computed, see notebook 04, section 8).
# The seed makes the sample reproducible.

# %%
for temperature in (0.0, 0.8):
    out = model.generate(ids, 24, temperature=temperature, top_k=40, seed=0)
    print(f"temperature {temperature}: {sentence}|{tok.decode(out[0, ids.shape[1]:].tolist())}")

# %% [markdown]
# ## 7. A stepper
#
# In a live notebook, the slider below shows step $k$ of the trace (it needs
# `ipywidgets`, which the project's `[notebooks]` extra installs). A page that
# shows saved outputs has no kernel to move a slider, so it shows every step as
# text instead; the sections above already showed each step with its figure.

# %%
def show_step(k: int) -> None:
    """Print step k (0-based) of the trace and draw its figure."""
    step = trace[k]
    print(f"step {k + 1} of {len(trace)}")
    print(step.describe())
    display(step.show())


class WithText:
    """Shows ``widget`` where a kernel runs it, and ``text`` where none does (a saved copy on the web)."""

    def __init__(self, widget, text: str):
        self.widget, self.text = widget, text

    def _repr_mimebundle_(self, **kwargs):
        return {**self.widget._repr_mimebundle_(**kwargs), "text/plain": self.text}


every_step = "\n\n".join(f"--- step {k + 1} of {len(trace)} ---\n{step.describe()}" for k, step in enumerate(trace))
try:
    import ipywidgets as widgets
except ImportError:
    widgets = None

if widgets is not None:
    slider = widgets.IntSlider(value=0, min=0, max=len(trace) - 1, description="step", continuous_update=False)
    display(WithText(widgets.interactive(show_step, k=slider), every_step))
else:
    print("(install ipywidgets, e.g. with the [notebooks] extra, for a slider; meanwhile every step, as text)\n")
    print(every_step)

# %% [markdown]
# ### The same trace as a page
#
# `Pipeline(tok, model).show_html(text)` shows the trace as the step-through page
# the demo writes with `--html`: the five stages in order (← / → keys, or the
# buttons), token merge trees, the embedding map, every attention head, the logit
# lens, and temperature and top-p sliders that recompute the probabilities in the
# page. It is one self-contained file with no network request, so it also works
# in this saved copy; `to_html(text, "page.html")` writes it to a file.

# %%
Pipeline(tok, model).show_html(sentence, height=720)

# %% [markdown]
# ## 8. Pitfalls
#
# - **The model never sees words.** It sees ids of tokens, and a token often
#   starts with a space (`' return'`). `'return'` and `' return'` are different
#   tokens with different rows of $W_E$.
# - **The pattern is not an explanation.** A head attending to a token says
#   where it *retrieves from*, not what it retrieves or whether it matters:
#   ablating it (exercise 3) is the test.
# - **Greedy is not "what the model thinks".** The step reports the most likely
#   next token; generation *samples*, and at temperature 0.8 a less likely token
#   is drawn often.
# - **The context is finite.** The course model takes at most 128 tokens;
#   `Pipeline` keeps the last 128 of a longer text, and `generate` refuses a
#   prompt plus continuation longer than that unless `crop=True`.
# - **Shapes are head-major.** `hook_q`, `hook_pattern` are `(B, H, T, ...)`;
#   TransformerLens stores `(B, T, H, D)`. `hook_z` is `(B, T, H, D)` in both.

# %% [markdown]
# ## 9. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`
# (or leaves `None`), and its check prints *not done yet*, so the notebook still
# runs top to bottom. Replace the stub, re-run the check, and aim for *passed*; a
# wrong answer fails loudly with an `AssertionError`. Solutions live in
# `solutions/00_pipeline_overview_solutions.ipynb`.
#
# - **core 1**: predict the shapes of four activations.
# - **core 2**: compute the next-token distribution from the final stream yourself.
# - **optional 3**: ablate each layer's attention and find the one the prediction needs most.
# - **stretch 4**: write the logit lens.

# %%
def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


T = ids.shape[1]
print(f"the sentence has T = {T} tokens; the model has C = {model.config.d_model}, H = {model.config.n_heads}, "
      f"D = {model.config.d_head}, F = {model.config.ff_width}, V = {model.config.vocab_size}")

# %% [markdown]
# **Core 1.** Without looking at the cache, write the shapes (tuples of ints)
# of these four activations for `ids` (one sentence of `T` tokens).

# %%
my_shapes = {
    "hook_embed": None,
    "blocks.2.attn.hook_pattern": None,
    "blocks.2.mlp.hook_post": None,
    "hook_logits": None,
}


def test_shapes():
    if any(v is None for v in my_shapes.values()):
        raise NotImplementedError
    for name, shape in my_shapes.items():
        assert tuple(shape) == cache[name].shape, f"{name}: you wrote {shape}, the cache holds {cache[name].shape}"


check("core 1 (shapes)", test_shapes)

# %% [markdown]
# **Core 2.** The head is tied: logits are the output of the final LayerNorm
# times $W_E^\top$ (`model.params["embed"]["W_E"]`, shape `(V, C)`), plus
# nothing else. `cache["unembed.hook_in"]` holds the stream after the
# final LayerNorm, its gain and bias included: exactly what the head reads
# (`ln_final.hook_normalized` is the same stream *before* the gain and bias,
# as in TransformerLens). From it, compute the probabilities of the next token after the
# **last** position, a `(V,)` array (use `nn.softmax`).

# %%
def my_next_token_probs(cache):
    raise NotImplementedError  # your code here


def test_next_token_probs():
    p = my_next_token_probs(cache)
    assert p.shape == (model.config.vocab_size,), f"shape {p.shape}: one probability per token of the vocabulary"
    assert np.isclose(p.sum(), 1.0, atol=1e-4), "probabilities sum to 1"
    assert np.allclose(p, nn.softmax(logits[0, -1].astype(np.float64)), atol=1e-5)


check("core 2 (next-token probabilities)", test_next_token_probs)

# %% [markdown]
# **Optional 3.** `model.run_with_hooks(ids, {name: fn})` runs the model with
# `fn` replacing an activation. Write `ablated_loss(layer)`: the cross-entropy
# (in nats, averaged over positions) of the sentence's own next tokens,
# `ids[0, 1:]` predicted from `ids[0, :-1]`, when layer `layer`'s attention
# output `blocks.{layer}.hook_attn_out` is replaced by zeros. Which layer's
# attention does the model need most? (`nn.cross_entropy_forward(logits,
# targets)` returns `(loss, cache)`.)

# %%
def ablated_loss(layer):
    raise NotImplementedError  # your code here


def test_ablated_loss():
    base, _ = nn.cross_entropy_forward(model.forward(ids[:, :-1]), ids[:, 1:])
    losses = [ablated_loss(layer) for layer in range(model.config.n_layers)]
    for layer, loss in enumerate(losses):
        zero = {f"blocks.{layer}.hook_attn_out": lambda a: np.zeros_like(a)}
        expected, _ = nn.cross_entropy_forward(model.run_with_hooks(ids[:, :-1], zero), ids[:, 1:])
        assert np.isclose(loss, expected, rtol=1e-5), f"layer {layer}: {loss} but expected {expected}"
    assert max(losses) > base, "removing attention should hurt somewhere"
    print(f"  loss {base:.2f} intact; without each layer's attention: " + ", ".join(f"{v:.2f}" for v in losses))


check("optional 3 (ablation)", test_ablated_loss)

# %% [markdown]
# **Stretch 4.** The logit lens applies the final norm and the head to the
# residual stream *after each block*, as if the model stopped there. Write
# `my_logit_lens(cache, layer)`: the id of the most likely next token after the
# last position, read from `blocks.{layer}.hook_resid_post`. The final norm is a
# LayerNorm with `model.params["ln_final"]["w"]`, `["b"]` and
# `eps = model.config.norm_eps`. Compare with `trace.lens.logit_lens`.

# %%
def my_logit_lens(cache, layer):
    raise NotImplementedError  # your code here


def test_logit_lens():
    reference = logit_lens(model, cache)
    for layer in range(model.config.n_layers):
        assert my_logit_lens(cache, layer) == reference[layer]["top_ids"][0], f"layer {layer}"
    assert my_logit_lens(cache, model.config.n_layers - 1) == int(np.argmax(logits[0, -1])), \
        "after the last block the lens is the model's own prediction"


check("stretch 4 (logit lens)", test_logit_lens)

# %% [markdown]
# ## 10. Further reading
#
# - Ashish Vaswani et al. (2017). *Attention Is All You Need.* NeurIPS. The
#   transformer (arXiv:1706.03762).
# - Alec Radford et al. (2019). *Language Models are Unsupervised Multitask
#   Learners.* The GPT-2 model this pipeline follows (pre-norm blocks, learned
#   positions, tied head).
# - Nelson Elhage et al. (2021). *A Mathematical Framework for Transformer
#   Circuits.* Anthropic. The residual stream as the model's communication channel.
# - nostalgebraist (2020). *interpreting GPT: the logit lens.* LessWrong.
# - Neel Nanda, *TransformerLens* (github.com/TransformerLensOrg/TransformerLens):
#   the activation names used here.
# - Aston Zhang et al. *Dive into Deep Learning*, chapter 11 (d2l.ai): attention
#   as a database lookup of queries, keys and values.
#
# In the package: `minitransformer/trace/` (`cache.py`: `run_with_cache` and
# `run_with_hooks`; `lens.py`: `logit_lens`; `pipeline.py`: `Pipeline`),
# `model.py` (the forward pass above), `concepts.py` (the five stages), and
# `docs/hooks.md` (every activation name).
