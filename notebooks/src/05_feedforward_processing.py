# Source of notebooks/05_feedforward_processing.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 05_feedforward`.

# %% [markdown]
# # Stage 5 · feed-forward & output · *processing*
#
# Attention moves information between positions; the MLP is where each position
# works on what it has gathered, alone. This notebook builds the MLP from tiny
# arrays (GELU, and SwiGLU as used in Llama), opens the course model's MLPs,
# follows the output head from the residual stream to logits, reads the
# model's guess after every layer (the *logit lens*), and turns logits into the
# next token with temperature, top-k and top-p.
#
# Everything runs offline, seeded, in a few seconds. Run the cells top to bottom.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import math

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from minitransformer.feedforward import mlp, output
from minitransformer.core import nn
from minitransformer import figures
from minitransformer.cli import load_course_model
from minitransformer.concepts import stage
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus, split_text
from minitransformer.feedforward import probabilities
from minitransformer.kit import gradcheck
from minitransformer.trace.lens import logit_lens

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small on the web
np.set_printoptions(precision=3, suppress=True)


model, tok, meta = load_course_model()  # data/course: trained by `minitransformer train`, see data/README.md
c = model.config
vocab_labels = [tok.decode([i]) for i in range(c.vocab_size)]
print(model)

# %% [markdown]
# ## 1. The concept: processing
#
# After retrieval comes processing. In a search engine, the documents a query
# retrieved are then scored, combined and turned into an answer; in a
# transformer, each position has just retrieved a mix of values from the past,
# and the MLP computes something from it, position by position, with no further
# communication. At the very end, the output head turns the last residual stream
# into a score for every token of the vocabulary, and sampling picks the next
# one. The pipeline's concept table says it in one place:

# %%
s = stage("feedforward")
print(f"stage {s.number}: {s.name}  ->  concept: {s.concept}")
print(f"question: {s.question}")
print(f"data: {s.data_in}  ->  {s.data_out}")
print()
print(s.summary)

# %% [markdown]
# ## 2. The mechanism
#
# For the stream $x \in \mathbb{R}^{C}$ at one position (after the norm), the
# GPT-2 MLP widens to $F = 4C$ hidden units, applies GELU, and narrows back:
#
# $$
# \operatorname{MLP}(x) = \operatorname{GELU}(x W_{in} + b_{in})\, W_{out} + b_{out},
# \qquad
# \operatorname{GELU}(u) \approx \tfrac12 u \Big(1 + \tanh\big(\sqrt{2/\pi}\,(u + 0.044715\,u^3)\big)\Big).
# $$
#
# SwiGLU (Llama, Mistral) has two input matrices: one branch is passed through
# $\operatorname{SiLU}(u) = u\,\sigma(u)$ and *gates* the other, unit by unit:
#
# $$
# \operatorname{SwiGLU}(x) = \big(\operatorname{SiLU}(x W_{gate}) \odot x W_{in}\big)\, W_{out}.
# $$
#
# After the last block, the final norm and the output head give logits, and a
# temperature $\tau$ turns them into probabilities. The course model ties its
# head to the embedding: the vector that reads a token in scores it on the way out.
#
# $$
# \text{logits} = \operatorname{LN}(x_L)\, W_E^\top, \qquad
# p_i = \frac{e^{\text{logit}_i / \tau}}{\sum_j e^{\text{logit}_j / \tau}} .
# $$

# %% [markdown]
# ## 3. By hand: three positions, two dimensions, four hidden units
#
# The MLP sees each position alone. Run it on the whole sequence or on each
# position separately: the results are the same, row for row. That is what
# "position-wise" means, and why the MLP is where a position *processes* rather
# than *retrieves*.

# %%
cfg_hand = ModelConfig(vocab_size=4, context_length=4, d_model=2, n_layers=1, n_heads=1, d_ff=4, bias=False)
hand = {"W_in": np.array([[1.0, -1.0, 0.5, 0.0], [0.0, 1.0, 0.5, -2.0]], np.float32),  # (C=2, F=4)
        "W_out": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]], np.float32)}  # (F=4, C=2)
x = np.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0]]], np.float32)  # (B=1, T=3, C=2)

pre = x @ hand["W_in"]  # (1, 3, 4)
post = 0.5 * pre * (1 + np.tanh(math.sqrt(2 / math.pi) * (pre + 0.044715 * pre**3)))
print("hidden pre-activation =\n", pre[0])
print("after GELU =\n", post[0])
print("output =\n", (post @ hand["W_out"])[0])

y, ff_cache = mlp.forward(hand, x, cfg_hand, need_cache=True)
assert np.allclose(y, post @ hand["W_out"], atol=1e-5)
one_at_a_time = np.concatenate([mlp.forward(hand, x[:, t:t + 1], cfg_hand)[0] for t in range(3)], axis=1)
assert np.allclose(y, one_at_a_time), "position-wise: each row is computed on its own"
print("the whole sequence at once == one position at a time: yes")

# %% [markdown]
# The non-linearities side by side. GELU is a smooth ReLU that lets small
# negative values through a little; SiLU is the same shape, a little deeper
# below zero. In SwiGLU, SiLU decides per unit how much of the *other* branch
# passes, so a unit can be on, off, or sign-flipped by the input.

# %%
u = np.linspace(-4, 4, 200)
fig = Figure(figsize=(6, 2.8))
ax = fig.add_subplot()
ax.plot(u, np.maximum(u, 0), label="ReLU", lw=1, ls="--", color="gray")
ax.plot(u, nn.gelu_forward(u)[0], label="GELU (tanh approximation)")
ax.plot(u, nn.silu_forward(u)[0], label="SiLU = u·σ(u)")
ax.axhline(0, color="black", lw=0.5)
ax.set_xlabel("u")
ax.legend()
ax.set_title("activation functions")
fig.tight_layout()
fig

# %%
cfg_glu = cfg_hand.replace(ffn="swiglu")
hand_glu = {**hand, "W_gate": np.array([[2.0, 0.0, -1.0, 1.0], [0.0, 2.0, 1.0, 1.0]], np.float32)}
gate, up = x @ hand_glu["W_gate"], x @ hand_glu["W_in"]
glu_hidden = gate / (1 + np.exp(-gate)) * up  # SiLU(gate) * up
print("gate (x W_gate) =\n", gate[0])
print("SiLU(gate) * (x W_in) =\n", glu_hidden[0])
y_glu, _ = mlp.forward(hand_glu, x, cfg_glu)
assert np.allclose(y_glu, glu_hidden @ hand_glu["W_out"], atol=1e-5)
print(f"SwiGLU's default width keeps the parameter count: GELU F = 4C = {4 * 128}, "
      f"SwiGLU F = {ModelConfig.preset('tiny', ffn='swiglu').ff_width} (about 8C/3) with three matrices instead of two")

# %% [markdown]
# ## 4. The course model's MLPs
#
# On 8 windows of held-out text, the hidden units of each layer's MLP before
# (`blocks.{i}.mlp.hook_pre`) and after (`hook_post`) the GELU. The GELU folds
# every negative input into the small range $[-0.17, 0]$, so after it the
# distribution is lopsided: a large share of values sit near zero, and a few
# units fire strongly (note the logarithmic count axis).

# %%
_, val_text = split_text(load_corpus("pydoc"))
val_ids = np.array(tok.encode_ordinary(val_text))
T = c.context_length
xb = val_ids[: 8 * T].reshape(8, T)
_, vcache = model.run_with_cache(xb, names_filter=lambda n: ".mlp." in n or n.endswith(("hook_attn_out", "hook_mlp_out")))
for i in range(c.n_layers):
    post = vcache["post", i]
    print(f"layer {i}: {post.shape[-1]} hidden units; {np.mean(np.abs(post) < 0.05):.0%} of values near zero, "
          f"largest {post.max():.1f}")
figures.mlp_histograms(vcache["pre", 0], vcache["post", 0], layer=0)

# %% [markdown]
# Geva et al. (2021) read an MLP as a memory: each hidden unit has a key, its
# column of $W_{in}$ (C, F), that a pattern in the stream can match, and a
# value, its row of $W_{out}$ (F, C), written back. Which texts make a unit
# fire? For three units of the last layer, the held-out positions where they are
# most active (the token in brackets, with the tokens before it):

# %%
L = c.n_layers - 1
post = vcache["post", L].reshape(-1, c.ff_width)  # (B*T, F)
flat_ids = xb.reshape(-1)
for unit in np.argsort(-post.max(axis=0))[:3]:
    top = np.argsort(-post[:, unit])[:4]
    contexts = []
    for n in top:
        t = n % T
        before = tok.decode(flat_ids[n - min(t, 4): n].tolist())
        contexts.append(f"{before}[{vocab_labels[flat_ids[n]]}]".replace("\n", "⏎"))
    print(f"unit {unit:>3} of layer {L}: " + " | ".join(repr(ctx) for ctx in contexts))

# %% [markdown]
# How much does each sub-layer write into the stream? The average size of what
# attention and the MLP add (`hook_attn_out`, `hook_mlp_out`), layer by layer.
# In this model the first MLP writes far more than anything else: it works on
# each token before much context has been gathered, in effect extending the
# embedding.

# %%
for i in range(c.n_layers):
    a = np.linalg.norm(vcache[f"blocks.{i}.hook_attn_out"], axis=-1).mean()
    m = np.linalg.norm(vcache[f"blocks.{i}.hook_mlp_out"], axis=-1).mean()
    print(f"layer {i}: attention adds |{a:5.2f}|, the MLP adds |{m:5.2f}|")

# %% [markdown]
# ## 5. The output head
#
# The final norm, then a product with the transposed embedding matrix: one
# logit per token. We check that this is exactly what the model returned, and
# show the most likely next tokens after a prompt.

# %%
text = "The return statement leaves the current function"
ids = np.array([tok.encode_ordinary(text)])
labels = [tok.decode([i]) for i in ids[0]]
logits, cache = model.run_with_cache(ids)
h = cache["unembed.hook_in"]  # (1, T, C): after the final norm's gain and bias, what the head reads
by_hand = h @ model.params["embed"]["W_E"].T  # tied head: (1, T, C) @ (C, V) -> (1, T, V)
assert np.allclose(by_hand, logits, atol=1e-4)
probs = probabilities(logits[0, -1])
print(f"prompt: {text!r}; the head's logits match by hand: yes")
figures.next_token_bars(probs, vocab_labels, k=10, title=f"after {text!r}")

# %% [markdown]
# ## 6. The logit lens: the guess after every layer
#
# The residual stream has the same width after every block, so the final norm
# and the head can be applied to it early (nostalgebraist, 2020). The answer is
# what the model "would say" if it stopped there. At each position of the
# prompt (columns), the top guess after each layer (rows), coloured by its
# probability:

# %%
T_p = len(labels)
guess = [[None] * T_p for _ in range(c.n_layers)]
prob = np.zeros((c.n_layers, T_p))
for t in range(T_p):
    for row in logit_lens(model, cache, position=t, k=1):
        guess[row["layer"]][t] = vocab_labels[row["top_ids"][0]]
        prob[row["layer"], t] = row["top_probs"][0]

fig = Figure(figsize=(1.0 + 0.8 * T_p, 0.6 + 0.55 * c.n_layers))
ax = fig.add_subplot()
ax.imshow(prob, cmap="Greens", vmin=0, vmax=1, aspect="auto")
for (i, t), p in np.ndenumerate(prob):
    ax.text(t, i, guess[i][t].replace(" ", "␣").replace("\n", "⏎")[:7], ha="center", va="center", fontsize=7)
ax.set_xticks(range(T_p), [lab.replace(" ", "␣") for lab in labels], rotation=45, fontsize=7)
ax.set_yticks(range(c.n_layers), [f"after block {i}" for i in range(c.n_layers)], fontsize=8)
ax.set_title("logit lens: top next-token guess read from the residual stream")
fig.tight_layout()
fig

# %%
final = int(np.argmax(probs))
print(f"the model's final choice after {labels[-1]!r} is {vocab_labels[final]!r}; its probability after each block:")
for row in logit_lens(model, cache, position=-1, k=c.vocab_size):
    p_final = row["top_probs"][row["top_ids"].index(final)]
    print(f"  after block {row['layer']}: {p_final:.1%}  (top guess {vocab_labels[row['top_ids'][0]]!r})")

# %% [markdown]
# ## 7. From logits to the next token
#
# `feedforward.probabilities` applies, in order: temperature (divide the logits;
# below 1 sharpens, above 1 flattens, 0 is greedy), top-k (keep the $k$ largest),
# and top-p or nucleus sampling (keep the smallest set of most likely tokens
# whose mass reaches $p$), then renormalises. `sample` draws from that with an
# explicit random generator.

# %%
figures.sampling_effects(logits[0, -1], vocab_labels,
                     settings=[{"temperature": 1.0}, {"temperature": 0.5}, {"temperature": 2.0},
                               {"top_k": 3}, {"top_p": 0.5}])

# %%
for setting in [{"temperature": 1.0}, {"temperature": 0.5}, {"temperature": 2.0}, {"top_p": 0.5}]:
    p = probabilities(logits[0, -1], **setting)
    H = -np.sum(p[p > 0] * np.log2(p[p > 0]))
    print(f"{str(setting):<22} entropy {H:5.2f} bits, {np.count_nonzero(p):>4} tokens possible")

# %%
prompt = np.array([tok.encode_ordinary("The return statement")])
for temperature in [0.0, 0.7, 1.5]:
    out = model.generate(prompt, 25, temperature=temperature, seed=0)
    print(f"temperature {temperature}: {tok.decode(out[0].tolist())!r}")

# %% [markdown]
# ## 8. Pitfalls
#
# - **Softmax overflow.** `exp(1000)` is infinite in float64 and `exp(89)` in
#   float32; subtract the largest logit first (it changes nothing mathematically).
#   `probabilities` does, and divides by the temperature *after* subtracting, so
#   a tiny temperature gives zeros, never NaN.
# - **Temperature 0 is not a division by zero.** It means greedy: all the mass
#   on the argmax. With greedy decoding, top-k and top-p change nothing.
# - **Top-p keeps at least one token**, and includes the token that crosses
#   $p$; implementations differ on that boundary, so compare with care.
# - **The logit lens needs the final norm.** Applying $W_E^\top$ to the raw
#   stream gives nonsense scales; `logit_lens` applies `ln_final` first. Early
#   layers were never trained to be read this way, so their guesses are rough.
# - **A tied head** means $W_E$ gets gradient from both ends of the model; a
#   change to the embedding is a change to the output head too.

# %%
big = np.array([1000.0, 999.0, 0.0])
with np.errstate(over="ignore", invalid="ignore"):
    naive = np.exp(big) / np.exp(big).sum()
print("naive softmax of [1000, 999, 0]:", naive)
print("stable softmax                 :", nn.softmax(big))
print("temperature 1e-9               :", probabilities(big, temperature=1e-9))

# %% [markdown]
# ## 9. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`
# (or leaves `None`), and its check prints *not done yet*, so the notebook still
# runs top to bottom. Replace the stub, re-run the check, and aim for *passed*; a
# wrong answer fails loudly with an `AssertionError`. Worked solutions are in
# `notebooks/solutions/05_feedforward_processing_solutions.ipynb`.
#
# - **core 1**: the GELU MLP of one layer, checked on the course model's cache.
# - **core 2**: top-p (nucleus) sampling.
# - **optional 3**: SwiGLU's backward pass, checked by finite differences.
# - **stretch 4**: min-p sampling.

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
# **Core 1.** Write `my_mlp(params, x)` for the GELU MLP with biases:
# `params` has `W_in` (C, F), `b_in` (F,), `W_out` (F, C), `b_out` (C,); `x` is
# (B, T, C). Return the output and the hidden activation after GELU. The check
# feeds it layer 1's normalised stream from the cache and compares with the
# stored `hook_post` and `hook_mlp_out`.

# %%
def my_mlp(params, x):
    raise NotImplementedError  # your code here: return y, hidden


def test_my_mlp():
    i = 1
    ln2 = model.params["blocks"][i]["ln2"]
    x = cache[f"blocks.{i}.ln2.hook_normalized"] * ln2["w"] + ln2["b"]  # the MLP's input: normalised, gain and bias applied
    y, hidden = my_mlp(model.params["blocks"][i]["mlp"], x)
    assert np.allclose(hidden, cache["post", i], atol=1e-4), "the hidden activation (hook_post) differs"
    assert np.allclose(y, cache[f"blocks.{i}.hook_mlp_out"], atol=1e-4), "the output (hook_mlp_out) differs"


check("core 1 (my_mlp)", test_my_mlp)

# %% [markdown]
# **Core 2.** Write `my_top_p(probs, top_p)`: given a probability vector (V,),
# keep the smallest set of most likely tokens whose total mass reaches `top_p`
# (keep a token if the mass of the tokens *before* it in sorted order is still
# below `top_p`), zero the rest, renormalise. Then `my_sample_top_p(logits,
# top_p, rng)` draws one id from it. The check compares the distribution with
# `feedforward.probabilities` and the sampled frequencies with it.

# %%
def my_top_p(probs, top_p):
    raise NotImplementedError  # your code here


def my_sample_top_p(logits, top_p, rng):
    raise NotImplementedError  # your code here: one int id


def test_my_top_p():
    rng = np.random.default_rng(0)
    for _ in range(200):
        lg = rng.normal(0, 2, size=20)
        p = float(rng.uniform(0.05, 1.0))
        assert np.allclose(my_top_p(nn.softmax(lg), p), probabilities(lg, top_p=p), atol=1e-9), f"top_p={p}"
    assert np.allclose(my_top_p(np.array([0.5, 0.3, 0.2]), 0.5), [1, 0, 0]), "0.5 is reached by the first token"
    lg = logits[0, -1].astype(np.float64)
    draws = np.bincount([my_sample_top_p(lg, 0.8, rng) for _ in range(4000)], minlength=c.vocab_size) / 4000
    expected = probabilities(lg, top_p=0.8)
    assert draws[expected == 0].sum() == 0, "a token outside the nucleus was drawn"
    assert np.abs(draws - expected).max() < 0.04, "the sampled frequencies do not follow the distribution"


check("core 2 (my_top_p)", test_my_top_p)

# %% [markdown]
# **Optional 3.** Write SwiGLU's backward pass (no biases):
# `y = (silu(x @ W_gate) * (x @ W_in)) @ W_out`, with `x` (N, C). Given the
# upstream gradient `dy` (N, C), return `dx, dW_gate, dW_in, dW_out`. Hints:
# the product rule splits the gradient of the hidden layer into the two branches;
# $\operatorname{silu}'(g) = \sigma(g)\,(1 + g\,(1 - \sigma(g)))$; and `x` feeds
# both branches. The check compares with central finite differences in float64
# (`minitransformer.kit.gradcheck`), and prints its report.

# %%
def swiglu(x, W_gate, W_in, W_out):
    g = x @ W_gate
    return (g * nn.sigmoid(g) * (x @ W_in)) @ W_out


def my_swiglu_backward(x, W_gate, W_in, W_out, dy):
    raise NotImplementedError  # your code here: return dx, dW_gate, dW_in, dW_out


def test_my_swiglu_backward():
    rng = np.random.default_rng(0)
    arrays = {"x": rng.normal(size=(5, 4)), "W_gate": rng.normal(size=(4, 6)),
              "W_in": rng.normal(size=(4, 6)), "W_out": rng.normal(size=(6, 4))}
    dy = rng.normal(size=(5, 4))
    grads = dict(zip(["x", "W_gate", "W_in", "W_out"], my_swiglu_backward(**arrays, dy=dy)))
    report = gradcheck(lambda a: swiglu(a["x"], a["W_gate"], a["W_in"], a["W_out"]), arrays, grads, dy)
    print(report)
    assert report.ok


check("optional 3 (my_swiglu_backward)", test_my_swiglu_backward)

# %% [markdown]
# **Stretch 4.** Min-p sampling (Nguyen et al., 2024) keeps every token whose
# probability is at least `min_p` times that of the most likely token, so the
# cut adapts: strict when the model is sure, loose when it is not. Write
# `my_min_p(logits, min_p, temperature=1.0)` returning the renormalised
# distribution (temperature first, as in `probabilities`).

# %%
def my_min_p(logits, min_p, temperature=1.0):
    raise NotImplementedError  # your code here


def test_my_min_p():
    lg = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    assert np.allclose(my_min_p(lg, 0.2), [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0.0]), "0.05 < 0.2 * 0.5"
    assert np.allclose(my_min_p(lg, 0.0), probabilities(lg)), "min_p = 0 keeps everything"
    assert np.allclose(my_min_p(lg, 1.0), [1, 0, 0, 0]), "min_p = 1 keeps only the top token"
    p = my_min_p(logits[0, -1].astype(np.float64), 0.1, temperature=0.7)
    ref = probabilities(logits[0, -1].astype(np.float64), temperature=0.7)
    keep = ref >= 0.1 * ref.max()
    assert np.allclose(p, np.where(keep, ref, 0) / ref[keep].sum()), "with temperature 0.7"


check("stretch 4 (my_min_p)", test_my_min_p)

# %% [markdown]
# ## 10. Further reading
#
# - Ashish Vaswani et al. (2017). *Attention Is All You Need*, section 3.3:
#   the position-wise feed-forward network (arXiv:1706.03762).
# - Dan Hendrycks, Kevin Gimpel (2016). *Gaussian Error Linear Units (GELUs)*
#   (arXiv:1606.08415).
# - Noam Shazeer (2020). *GLU Variants Improve Transformer* (arXiv:2002.05202).
# - Mor Geva et al. (2021). *Transformer Feed-Forward Layers Are Key-Value
#   Memories.* EMNLP (arXiv:2012.14913).
# - nostalgebraist (2020). *interpreting GPT: the logit lens* (LessWrong).
# - Ari Holtzman et al. (2020). *The Curious Case of Neural Text Degeneration.*
#   ICLR. Nucleus (top-p) sampling (arXiv:1904.09751).
# - Ofir Press, Lior Wolf (2017). *Using the Output Embedding to Improve
#   Language Models.* EACL. Tied embeddings (arXiv:1608.05859).
#
# In the package: `minitransformer/feedforward/mlp.py` (the MLP variants),
# `feedforward/output.py` (the head, `probabilities` and `sample`),
# `core/activations.py` (GELU), `core/nn.py` (SiLU, softmax) and
# `trace/lens.py` (`logit_lens`).
