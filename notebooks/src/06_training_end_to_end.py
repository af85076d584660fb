# Source of notebooks/06_training_end_to_end.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 06_training`.

# %% [markdown]
# # Training end to end · where every concept comes from
#
# The five stages of the pipeline start out as random numbers. The tokenizer is
# trained by counting, but the embedding's classes, the positions' index, the
# heads' lookups and the MLPs' processing are all learned from one signal: how
# surprised the model is by the next token. This notebook trains a small model
# from scratch on the built-in corpus, with a progress bar, and watches the loss
# and the model's own writing improve as it trains.
#
# Everything runs offline, seeded, in well under a minute on two cores.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import math
import time
import warnings

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from minitransformer.core import nn
from minitransformer import figures
from minitransformer.concepts import STAGES
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus, split_text
from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.training import AdamW, TrainConfig, Trainer, evaluate_tokens, get_batch, lr_at, unigram_loss

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small on the web
try:  # without ipywidgets, tqdm falls back to a text bar and warns once; the text bar is all we need
    from tqdm import TqdmWarning

    warnings.filterwarnings("ignore", category=TqdmWarning)
except ImportError:  # no tqdm at all: Trainer.run(progress=True) prints log lines instead
    pass

# %% [markdown]
# ## 1. The concept: one signal teaches all five stages
#
# Each stage of the pipeline answers a question (the table below is read from
# `minitransformer/concepts.py`). Before training, only the first question has
# an answer: the tokenizer's merges were counted from the corpus. Every other
# answer is a weight matrix that starts random, and training shapes them all at
# once by nudging every weight in the direction that makes the text that really
# came next more probable. Nobody tells the heads what to retrieve or the MLPs
# what to compute: those roles are whatever lowers the loss.

# %%
for s in STAGES:
    print(f"{s.number}. {s.name:<22} {s.concept:<15} {s.question}")

# %% [markdown]
# ## 2. The mechanism: next-token cross-entropy, gradients, AdamW
#
# For a window of tokens $x_1, \dots, x_{T+1}$ the model gives, at every
# position $t$, a distribution $p_\theta(\cdot \mid x_{\le t})$ over the
# vocabulary. The loss is the mean surprise of the token that really came next,
# in nats:
#
# $$
# \mathcal{L}(\theta) = -\frac{1}{T} \sum_{t=1}^{T} \log p_\theta(x_{t+1} \mid x_{\le t}),
# \qquad
# \frac{\partial \mathcal{L}}{\partial\, \text{logits}_t} = \frac{1}{T}\big(p_\theta(\cdot \mid x_{\le t}) - \text{onehot}(x_{t+1})\big).
# $$
#
# The backward pass carries that gradient through every stage (each has a
# hand-written `backward`), and AdamW turns gradients $g$ into steps, with
# running means $m$, $v$ of $g$ and $g^2$, a learning rate $\eta_s$ that warms up
# and then follows a cosine, and weight decay $\lambda$ applied to matrices only:
#
# $$
# m \leftarrow \beta_1 m + (1-\beta_1) g,\quad
# v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
# \theta \leftarrow \theta (1 - \eta_s \lambda) - \eta_s \frac{m / (1-\beta_1^s)}{\sqrt{v / (1-\beta_2^s)} + \epsilon}.
# $$

# %% [markdown]
# ## 3. By hand: one position, a four-token vocabulary
#
# The model's logits for one position, the token that really came next (id 2),
# the loss, its gradient, and one step of plain gradient descent on the logits
# themselves: the probability of the right token goes up, the loss goes down.

# %%
logits = np.array([2.0, 1.0, 0.5, -1.0])  # scores for tokens 0..3
target = 2
p = np.exp(logits - logits.max())
p /= p.sum()
loss = -math.log(p[target])
grad = p.copy()
grad[target] -= 1.0  # p - onehot
print("probabilities:", p.round(3), f" loss = -log p[{target}] = {loss:.3f} nats")
print("gradient     :", grad.round(3), " (sums to 0: mass moves to the target from the others)")

lib_loss, lib_cache = nn.cross_entropy_forward(logits[None], np.array([target]))
assert np.isclose(lib_loss, loss) and np.allclose(nn.cross_entropy_backward(lib_cache)[0], grad)
stepped = logits - 1.0 * grad  # one step, learning rate 1
p2 = np.exp(stepped - stepped.max())
p2 /= p2.sum()
print(f"after one step: p[{target}] {p[target]:.3f} -> {p2[target]:.3f}, loss {loss:.3f} -> {-math.log(p2[target]):.3f}")
print(f"a model that knows nothing (uniform over 4 tokens) pays log 4 = {math.log(4):.3f} nats")

# %% [markdown]
# ## 4. The data
#
# The corpus is the Python language reference that ships with CPython. Its last
# tenth is held out: the model never trains on it, so the loss there measures
# what it learned rather than what it memorised. The tokenizer (stage 1) is
# trained on the training part only. A training batch is a set of random windows;
# the targets are the inputs shifted by one token.

# %%
train_text, val_text = split_text(load_corpus("pydoc"))
t0 = time.perf_counter()
tok = Tokenizer.train(train_text, 1023, special_tokens=["<|endoftext|>"])  # 767 merges + 256 bytes + 1 special
train_ids = np.array(tok.encode_ordinary(train_text))
val_ids = np.array(tok.encode_ordinary(val_text))
print(f"tokenizer: {tok.vocab_size} ids, trained and applied in {time.perf_counter() - t0:.1f} s")
print(f"{len(train_ids):,} training tokens, {len(val_ids):,} validation tokens")

x, y = get_batch(train_ids, batch_size=2, context=12, rng=np.random.default_rng(0))
print("\ninputs :", [tok.decode([i]) for i in x[0]])
print("targets:", [tok.decode([i]) for i in y[0]])

# %% [markdown]
# Two baselines tell us what a loss means. A model that knows nothing pays
# $\log V$ nats per token. A **unigram** model knows how frequent each token is,
# but nothing about context; a language model must beat it by a wide margin to be
# using the context at all.

# %%
V = tok.vocab_size
baseline = unigram_loss(train_ids, val_ids, V)
print(f"uniform over {V} tokens: {math.log(V):.3f} nats/token")
print(f"unigram baseline      : {baseline:.3f} nats/token")

# %% [markdown]
# ## 5. The model, before training
#
# The `tiny` preset with two layers instead of four and a context of 64 tokens
# instead of 128, so that training fits in half a minute. At initialisation the
# logits are all close to zero, so the loss is close to $\log V$ and the writing
# is noise.

# %%
config = ModelConfig.preset("tiny", n_layers=2, context_length=64, vocab_size=V)
model = GPT(config, seed=0)
print(model)
init_params = {name: a.copy() for name, a in model.named_parameters().items()}  # kept to compare later

prompt = np.array([tok.encode_ordinary("The return statement")])


def write(model, n=40):
    """A continuation of the prompt (temperature 0.8, top-k 40, fixed seed): the same model writes the same."""
    out = model.generate(prompt, n, temperature=0.8, top_k=40, seed=0)
    return tok.decode(out[0].tolist())


init_loss = evaluate_tokens(model, val_ids[: 16 * 64 + 1])  # 16 windows of held-out text
print(f"\nloss at initialisation: {init_loss:.3f} (log V = {math.log(V):.3f})")
print("writing:", repr(write(model)))

# %% [markdown]
# ## 6. Training, with a progress bar and samples along the way
#
# `Trainer.run(progress=True)` draws a tqdm bar with the loss and the speed in
# tokens per second (without tqdm it prints log lines instead). The trainer
# evaluates on held-out batches every `eval_every` steps; a subclass that also
# writes a sample whenever it evaluates lets us watch the writing improve
# without stopping the loop. The sample has its own fixed seed, so it does not
# disturb the training's random streams.

# %%
samples = []  # (step, validation loss, continuation) at every evaluation


class SamplingTrainer(Trainer):
    """A Trainer that also writes a continuation of the prompt whenever it evaluates."""

    def evaluate(self):
        loss = super().evaluate()
        samples.append((self.state.step, loss, write(self.model)))
        return loss


train_config = TrainConfig(steps=600, batch_size=16, context=64, lr=3e-3, min_lr=3e-4, warmup=50,
                           eval_every=100, eval_batches=8, seed=0)
trainer = SamplingTrainer(model, train_ids, val_ids, train_config)
t0 = time.perf_counter()
state = trainer.run(progress=True)
elapsed = time.perf_counter() - t0
print(f"{state.step} steps, {state.tokens_seen:,} tokens in {elapsed:.1f} s; "
      f"final validation loss {state.evals[-1][1]:.3f} (unigram baseline {baseline:.3f})")

# %% [markdown]
# ## 7. Watching it learn
#
# The training loss (one noisy point per batch), the validation loss at each
# evaluation, and the unigram baseline. The model passes the baseline early:
# learning which tokens are frequent is easy. Everything below the baseline is
# the context being used.

# %%
figures.loss_curves(state.losses, state.evals, baseline, title="2-layer tiny model on the pydoc corpus")

# %% [markdown]
# The learning rate followed a warmup then a cosine: large steps while the loss
# falls fast, small ones at the end so the weights settle.

# %%
steps = np.arange(train_config.steps)
fig = Figure(figsize=(6, 2.2))
ax = fig.add_subplot()
ax.plot(steps, [lr_at(int(s), train_config.lr, train_config.warmup, train_config.steps, train_config.min_lr)
                for s in steps])
ax.set_xlabel("step")
ax.set_ylabel("learning rate")
ax.set_title("warmup, then cosine decay")
fig.tight_layout()
fig

# %% [markdown]
# And the writing, at each evaluation. By step 100 it already strings common
# words together, mixed with invented ones (`conalient`, `binceing`); later
# samples look more like the Python documentation, with its quoted keywords
# (`"if"`, `"except*" clause`) and underlined headings, though made-up words
# remain to the end.

# %%
for step, loss, text in samples:
    print(f"step {step:>4}  val {loss:.2f}  {text!r}\n")

# %% [markdown]
# ## 8. Inside the trained model
#
# Training changed every stage. The attention patterns are the easiest place to
# see it: at initialisation every head spreads its weight almost evenly over
# the past (the scores are all near zero); after training, heads have become
# selective, some looking at the previous token, some at particular earlier ones.

# %%
text = "The return statement may only occur in a function"
ids = np.array([tok.encode_ordinary(text)])
labels = [tok.decode([i]) for i in ids[0]]
untrained = GPT(config, seed=0)  # the same seed: the very weights training started from
assert all(np.array_equal(a, init_params[n]) for n, a in untrained.named_parameters().items())


def patterns(m):
    _, cache = m.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_pattern"))
    return np.stack([cache["pattern", i][0] for i in range(m.config.n_layers)])  # (L, H, T, T)


figures.attention_patterns(patterns(untrained), labels, title="before training")

# %%
figures.attention_patterns(patterns(model), labels, title="after 600 steps")

# %% [markdown]
# ## 9. Pitfalls
#
# - **A learning rate too large diverges.** Below, a learning rate of 3 (a
#   thousand times ours) without clipping: the loss shoots up instead of down.
#   If it ever becomes NaN, `Trainer` stops with a `FloatingPointError` that
#   says so, instead of training on garbage.
# - **Judging on training text.** The training loss falls below the validation
#   loss as a model memorises; only held-out text says what it learned.
# - **Noisy evaluations.** `Trainer.evaluate` reads a few random batches (fixed,
#   so comparable from one evaluation to the next); `training.evaluate_tokens`
#   reads every window of the held-out text, for a figure to record.
# - **Losses of different tokenizers do not compare.** A loss is per *token*;
#   a tokenizer with longer tokens has fewer, harder ones. Convert to bits per
#   byte (exercise 3) to compare.
# - **A loss at initialisation far from $\log V$** means a bug (or a bad
#   initialisation scale); check it before training for hours.

# %%
unstable = Trainer(GPT(config, seed=0), train_ids, val_ids,
                   TrainConfig(steps=10, lr=3.0, warmup=1, grad_clip=0.0, eval_every=0, context=64), log=None)
try:
    losses = [unstable.train_step() for _ in range(10)]
    print("losses with lr=3:", " ".join(f"{v:.0f}" for v in losses))
except FloatingPointError as err:
    print(f"FloatingPointError: {err}")

# %% [markdown]
# ## 10. Exercises
#
# Each exercise has a stub and a check cell. A stub raises `NotImplementedError`
# (or leaves `None`), and its check prints *not done yet*, so the notebook still
# runs top to bottom. Replace the stub, re-run the check, and aim for *passed*; a
# wrong answer fails loudly with an `AssertionError`. Worked solutions are in
# `notebooks/solutions/06_training_end_to_end_solutions.ipynb`.
#
# - **core 1**: predict the loss of a fresh model on a vocabulary of 5,000.
# - **core 2**: write the learning-rate schedule.
# - **optional 3**: convert nats per token into bits per byte.
# - **stretch 4**: write one AdamW step.

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
# **Core 1.** A freshly initialised model with a vocabulary of 5,000 tokens has
# logits close to zero everywhere. Without running anything, what loss (nats per
# token, two decimals) does it have? And the unigram model of a text in which all
# 5,000 tokens are equally frequent?

# %%
guess_fresh_loss = None  # a number
guess_unigram_uniform = None  # a number


def test_predict_loss():
    if guess_fresh_loss is None or guess_unigram_uniform is None:
        raise NotImplementedError
    fresh = GPT(ModelConfig.preset("toy", vocab_size=5000), seed=0)
    ids = np.random.default_rng(0).integers(0, 5000, (4, 16))
    actual = fresh.loss(ids[:, :-1], ids[:, 1:])
    assert abs(guess_fresh_loss - actual) < 0.05, f"the fresh model's loss is {actual:.3f}"
    assert abs(guess_unigram_uniform - math.log(5000)) < 0.01, "equally frequent tokens: the unigram model is uniform"


check("core 1 (predict the loss)", test_predict_loss)

# %% [markdown]
# **Core 2.** Write `my_lr(step, max_lr, warmup, total, min_lr)`: linear warmup
# from `max_lr / warmup` at step 0 to `max_lr` at step `warmup - 1`, then a cosine
# from `max_lr` (at step `warmup`) down to `min_lr` (at step `total`), and
# `min_lr` after that. The check compares it with `training.lr_at`.

# %%
def my_lr(step, max_lr, warmup, total, min_lr=0.0):
    raise NotImplementedError  # your code here


def test_my_lr():
    for warmup, total in [(50, 600), (1, 10), (10, 11)]:
        for s in range(total + 5):
            assert math.isclose(my_lr(s, 3e-3, warmup, total, 3e-4), lr_at(s, 3e-3, warmup, total, 3e-4),
                                rel_tol=1e-9), f"step {s} (warmup {warmup}, total {total})"


check("core 2 (my_lr)", test_my_lr)

# %% [markdown]
# **Optional 3.** A loss in nats per token depends on the tokenizer. Bits per
# byte do not: multiply by the number of tokens, convert nats to bits (divide by
# $\ln 2$), divide by the number of UTF-8 bytes of the text. Write
# `bits_per_byte(loss, text, tokenizer)`. (A byte-level model with no merges and
# the same bits per byte would be just as good a compressor.)

# %%
def bits_per_byte(loss_nats_per_token, text, tokenizer):
    raise NotImplementedError  # your code here


def test_bits_per_byte():
    text = val_text[:5000]
    n_tokens, n_bytes = len(tok.encode_ordinary(text)), len(text.encode("utf-8"))
    assert math.isclose(bits_per_byte(1.0, text, tok), n_tokens / math.log(2) / n_bytes, rel_tol=1e-9)
    bytes_only = Tokenizer()  # no merges: one token per byte
    assert math.isclose(bits_per_byte(math.log(2), text, bytes_only), 1.0), "1 bit per byte-token is 1 bit per byte"


check("optional 3 (bits per byte)", test_bits_per_byte)

# %% [markdown]
# **Stretch 4.** Write one AdamW step for a single weight matrix, in place:
# `my_adamw_step(w, g, m, v, t, lr, betas, eps, weight_decay)` updates `w`, `m`
# and `v` (arrays) for step number `t` (1 for the first step), with bias
# correction and decoupled weight decay, as in section 2. The check runs five
# steps next to `training.AdamW` (which decays matrices, as here).

# %%
def my_adamw_step(w, g, m, v, t, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
    raise NotImplementedError  # your code here


def test_my_adamw():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    params = {"W": w0.copy()}
    opt = AdamW(params, lr=0.01, weight_decay=0.1)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    for t in range(1, 6):
        g = rng.normal(size=(3, 4)).astype(np.float32)
        opt.step(g.reshape(-1).copy())
        my_adamw_step(w, g, m, v, t, lr=0.01)
        assert np.allclose(w, params["W"], atol=1e-6), f"step {t}: max diff {np.abs(w - params['W']).max():.2e}"


check("stretch 4 (my_adamw_step)", test_my_adamw)

# %% [markdown]
# ## 11. Further reading
#
# - Ilya Loshchilov, Frank Hutter (2019). *Decoupled Weight Decay
#   Regularization.* ICLR. AdamW (arXiv:1711.05101).
# - Diederik Kingma, Jimmy Ba (2015). *Adam: A Method for Stochastic
#   Optimization.* ICLR (arXiv:1412.6980).
# - Jared Kaplan et al. (2020). *Scaling Laws for Neural Language Models*
#   (arXiv:2001.08361), and Jordan Hoffmann et al. (2022), *Training
#   Compute-Optimal Large Language Models* (arXiv:2203.15556): how loss falls
#   with parameters, data and compute.
# - Andrej Karpathy, *nanoGPT* (github.com/karpathy/nanoGPT): the same loop in
#   PyTorch, with the same warmup + cosine schedule.
# - Andrej Karpathy (2019). *A Recipe for Training Neural Networks* (blog post):
#   check the loss at initialisation, overfit one batch, then scale up.
#
# In the package: `minitransformer/training/` (`optimizer.py`: AdamW and the
# schedule; `loop.py`: the loop; `checkpoint.py`: checkpoints), `core/nn.py`
# (the cross-entropy and its backward), and `minitransformer train --help` for
# the same training from the command line.
