# Source of notebooks/solutions/06_training_end_to_end_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 06_training`.

# %% [markdown]
# # Solutions · Training end to end
#
# Worked solutions to the exercises of `06_training_end_to_end.ipynb`. Try them
# there first: a solution read before the attempt teaches much less than one
# read after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*. None of
# them needs the trained model, so nothing is trained here.

# %%
import math

import numpy as np

from minitransformer.core.config import ModelConfig
from minitransformer.training.data import load_corpus, split_text
from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.training import AdamW, lr_at

# The notebook's setup, the part the checks use.
train_text, val_text = split_text(load_corpus("pydoc"))
tok = Tokenizer.train(train_text, 1023, special_tokens=["<|endoftext|>"])


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: the loss of a fresh model
#
# At initialisation the logits are tiny (weights of standard deviation 0.02),
# so the softmax is nearly uniform over the $V$ tokens and the loss is nearly
# $-\log(1/V) = \log V = \log 5000 \approx 8.52$ nats, whatever the text. (It is a
# hair above: any deviation from uniform, on targets the model knows nothing
# about, costs a little on average.)
#
# A unigram model of a text in which every token is equally frequent *is* the
# uniform distribution, so it pays exactly $\log 5000$ too: knowing the
# frequencies helps only when they differ.

# %%
guess_fresh_loss = math.log(5000)
guess_unigram_uniform = math.log(5000)
print(f"log 5000 = {guess_fresh_loss:.3f}")


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
# ## Core 2: warmup, then cosine
#
# Steps are counted from 0, so the warmup reaches `max_lr` at step `warmup - 1`:
# $\eta_s = \eta_{max} (s + 1) / \text{warmup}$. After it, the progress
# $\pi = (s - \text{warmup}) / (\text{total} - \text{warmup})$ runs from 0 to 1 and
# the cosine goes from $\eta_{max}$ down to $\eta_{min}$:
# $\eta_s = \eta_{min} + \tfrac12 (\eta_{max} - \eta_{min})(1 + \cos \pi\,\pi)$.
# `max(1, ...)` guards a schedule whose warmup takes all the steps.

# %%
def my_lr(step, max_lr, warmup, total, min_lr=0.0):
    if step < warmup:
        return max_lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def test_my_lr():
    for warmup, total in [(50, 600), (1, 10), (10, 11)]:
        for s in range(total + 5):
            assert math.isclose(my_lr(s, 3e-3, warmup, total, 3e-4), lr_at(s, 3e-3, warmup, total, 3e-4),
                                rel_tol=1e-9), f"step {s} (warmup {warmup}, total {total})"


check("core 2 (my_lr)", test_my_lr)

# %% [markdown]
# ## Optional 3: bits per byte
#
# The total surprise of the text is (loss per token) × (number of tokens) nats;
# dividing by $\ln 2$ turns nats into bits, and dividing by the UTF-8 length
# spreads them over bytes. With a larger vocabulary there are fewer tokens, each
# harder to predict; bits per byte cancel that out.

# %%
def bits_per_byte(loss_nats_per_token, text, tokenizer):
    n_tokens = len(tokenizer.encode_ordinary(text))
    return loss_nats_per_token * n_tokens / math.log(2) / len(text.encode("utf-8"))


def test_bits_per_byte():
    text = val_text[:5000]
    n_tokens, n_bytes = len(tok.encode_ordinary(text)), len(text.encode("utf-8"))
    assert math.isclose(bits_per_byte(1.0, text, tok), n_tokens / math.log(2) / n_bytes, rel_tol=1e-9)
    bytes_only = Tokenizer()  # no merges: one token per byte
    assert math.isclose(bits_per_byte(math.log(2), text, bytes_only), 1.0), "1 bit per byte-token is 1 bit per byte"


check("optional 3 (bits per byte)", test_bits_per_byte)

# %% [markdown]
# ## Stretch 4: one AdamW step
#
# Running means of the gradient and of its square, their bias corrections
# (both start at zero, so early averages are too small by $1 - \beta^t$), the
# decoupled weight decay applied to the weights themselves (not added to the
# gradient, which Adam would rescale), then the step. Everything is in place
# (`w -= ...`, `m *= ...`), so the caller's arrays change, as in the optimizer.

# %%
def my_adamw_step(w, g, m, v, t, lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1):
    b1, b2 = betas
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    w *= 1 - lr * weight_decay  # decoupled: shrink the weights, whatever the gradient
    w -= lr * m_hat / (np.sqrt(v_hat) + eps)


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
