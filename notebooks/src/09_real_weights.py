# Source of notebooks/09_real_weights.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 09_real`.

# %% [markdown]
# # Real weights · GPT-2 checkpoints in and out
#
# Everything so far ran on weights this package made itself. This notebook
# checks the package against the models people actually use. The bridge is the
# **GPT-2 checkpoint format** that Hugging Face `transformers` reads and writes:
# a `config.json` and a `model.safetensors`. We
#
# 1. open such a checkpoint byte by byte, and map its names onto ours;
# 2. load a tiny GPT-2 that `transformers` made (with random weights) and get
#    the logits that `transformers` computed for it, to 1e-4, with numpy alone;
# 3. step through the five stages on it, using the forward pass's own caches;
# 4. compare its attention patterns with those of a model trained on text;
# 5. export a model and its tokenizer so that `transformers` and PyTorch can
#    take them further;
# 6. load the real GPT-2 (124 M parameters) if you have it on disk.
#
# It runs offline in well under a minute. Run the cells top to bottom.

# %%
# %matplotlib inline
# %config InlineBackend.figure_format = "png"
import importlib.util
import json
import os
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
from IPython.display import display

from minitransformer.interop import gpt2
from minitransformer.core import nn
from minitransformer.interop import safetensors as safetensors_io
from minitransformer import figures
from minitransformer.concepts import stage
from minitransformer.core.config import ModelConfig
from minitransformer.training.data import data_dir, load_corpus, split_text
from minitransformer.model import GPT, forward
from minitransformer.tokenizer import Tokenizer
from minitransformer.interop.hf_tokenizer import export_hf_tokenizer, token_string
from minitransformer.training import TrainConfig, Trainer, load_model

matplotlib.rcParams["figure.dpi"] = 80  # modest: the executed notebook stays small

FIXTURE = Path("..") / "tests" / "fixtures" / "gpt2"  # the notebook runs from notebooks/
HAVE_TORCH = all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers"))
print("transformers and torch installed:", HAVE_TORCH, "(optional: only section 6 uses them)")

# %% [markdown]
# ## 1. What is in a checkpoint
#
# The fixture in `tests/fixtures/gpt2/` was made once by `make_fixture.py`: a
# `GPT2LMHeadModel` with 2 layers, 2 heads, width 32 and 100 token ids, random
# weights (seeded), saved with `save_pretrained`. Its `config.json` holds the
# sizes under GPT-2's names:

# %%
hf_config = json.loads((FIXTURE / "config.json").read_text())
for key in ("model_type", "n_layer", "n_head", "n_embd", "n_positions", "vocab_size",
            "activation_function", "layer_norm_epsilon", "tie_word_embeddings"):
    print(f"{key:<22} {hf_config[key]}")

# %% [markdown]
# `model.safetensors` is a format simple enough to read by hand: 8 bytes giving
# the length N of a JSON header, the header (each tensor's dtype, shape and byte
# range), then the raw little-endian numbers. No code from the file is ever
# run, which is the point: a pickled PyTorch `.bin` file can execute anything
# when it is loaded.

# %%
raw = (FIXTURE / "model.safetensors").read_bytes()
n = int.from_bytes(raw[:8], "little")
print(f"file: {len(raw):,} bytes; header: {n:,} bytes; data: {len(raw) - 8 - n:,} bytes")
print("the header starts:", raw[8:8 + 150].decode())
tensors, metadata, start = safetensors_io.read_header(FIXTURE / "model.safetensors")
print("metadata:", metadata)
for name, info in list(tensors.items())[:6]:
    print(f"  {name:<40} {info['dtype']}  {str(info['shape']):<10} bytes {info['data_offsets']}")
print(f"  ... {len(tensors)} tensors")

# %% [markdown]
# ## 2. Their names, our names
#
# `minitransformer.interop.gpt2.TABLE` is the whole mapping, one row per GPT-2 tensor.
# Two things are worth noticing:
#
# - **No transposes.** GPT-2's linear layers are `Conv1D` modules (a name kept
#   from the original TensorFlow code), which store the weight as (in, out) and
#   compute `x @ W + b`: the layout our `nn.linear_forward` uses. PyTorch's
#   `nn.Linear` stores (out, in); that is why minGPT and nanoGPT transpose these
#   four weights when they load GPT-2.
# - **One fused projection.** `c_attn` computes queries, keys and values in one
#   matmul: its (C, 3C) weight is `[W_Q | W_K | W_V]` side by side. We keep three
#   named matrices (and fuse them again inside `attention.mha.forward`, for
#   speed).
#
# There is no row for the output head: GPT-2 ties it to the token embedding, as
# our `tie_embeddings=True` does.

# %%
print(f"{'GPT-2 name':<28}{'shape':<8}{'how':<8}our name(s)")
for name, shape, ours, how in gpt2.TABLE:
    print(f"{name:<28}{shape:<8}{how:<8}{', '.join(ours)}")

# %% [markdown]
# ## 3. Load it, and check it against `transformers`
#
# `load_gpt2` reads `config.json` into a `ModelConfig` (GPT-2 is exactly the
# defaults: learned positions, LayerNorm, tanh-GELU, multi-head attention with
# biases, a tied head), reads the weights, follows the table and checks every
# shape. `expected.npz` holds the input ids and the logits that `transformers`
# computed for them (in float32, on a CPU) when the fixture was made.

# %%
model = gpt2.load_gpt2(FIXTURE)
print(model)
with np.load(FIXTURE / "expected.npz", allow_pickle=False) as f:
    expected = {k: f[k] for k in f.files}
ids = expected["input_ids"]  # (2, 16)
logits = model.forward(ids)  # (2, 16, 100)
error = np.abs(logits - expected["logits"]).max()
print(f"logits {logits.shape}: largest difference from transformers {error:.1e} "
      f"(their spread: std {expected['logits'].std():.2f})")
greedy = model.generate(expected["greedy"][:, :8], 16, temperature=0.0)
print("greedy continuation, ours:        ", greedy[0, 8:].tolist())
print("greedy continuation, transformers:", expected["greedy"][0, 8:].tolist())
assert error < 1e-4 and np.array_equal(greedy, expected["greedy"])

# %% [markdown]
# ## 4. Step through the pipeline on someone else's weights
#
# The forward pass keeps, for backward, every activation under a stable name;
# with `record=True` it also keeps the pre-softmax scores. Walking that cache in
# the order the data flows is the step-through trace, on GPT-2's weights. The
# RMS (root mean square) of each activation shows how large the numbers are at
# each step.

# %%
logits, cache = forward(model.params, model.config, ids[:1], need_cache=True, record=True)


def rms(a):
    return float(np.sqrt(np.mean(np.square(a))))


def step(stage_key, name, array):
    s = stage(stage_key)
    print(f"  {s.number} {s.concept:<14} {name:<32} {str(array.shape):<16} rms {rms(array):6.3f}")


print("stage concept        activation                       shape            size")
step("embedding", "hook_embed", cache["embed"]["hook_embed"])
step("positional", "hook_pos_embed", cache["pos"]["hook_pos_embed"])
for i, block in enumerate(cache["blocks"]):
    attn, mlp = block["attn"], block["mlp"]
    step("attention", f"blocks.{i}.hook_resid_pre", block["hook_resid_pre"])
    for hook in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z"):
        data = attn[hook]
        step("attention", f"blocks.{i}.attn.{hook}", np.where(np.isfinite(data), data, 0.0))
    step("attention", f"blocks.{i}.hook_resid_mid", block["hook_resid_mid"])
    step("feedforward", f"blocks.{i}.mlp.hook_pre", mlp["hook_pre"])
    step("feedforward", f"blocks.{i}.mlp.hook_post", mlp["hook_post"])
    step("feedforward", f"blocks.{i}.hook_resid_post", block["hook_resid_post"])
step("feedforward", "logits", logits)

# %% [markdown]
# The cache is the computation, not a copy of it: the last residual stream,
# normalised and read by the tied head `W_E`, gives back the logits, and the
# pattern is the softmax of the recorded scores. One shape differs from the
# table in `docs/hooks.md`: this raw cache keeps `hook_z` as (B, T, H·D), the
# heads side by side as `W_O` reads them, here (1, 16, 32) for 2 heads of 16;
# `model.run_with_cache` hands it out as (B, T, H, D).

# %%
p = model.params
resid = cache["blocks"][-1]["hook_resid_post"]  # (1, T, C)
normed = nn.layernorm_forward(resid, p["ln_final"]["w"], p["ln_final"]["b"], model.config.norm_eps)[0]
by_hand = normed @ p["embed"]["W_E"].T  # the tied head: (1, T, C) @ (C, V) -> (1, T, V)
print("logits from the cache by hand: largest difference", f"{np.abs(by_hand - logits).max():.1e}")
scores = cache["blocks"][0]["attn"]["hook_attn_scores"]  # (1, H, T, T), -inf on the future
softmax = np.exp(scores - scores.max(-1, keepdims=True))
softmax /= softmax.sum(-1, keepdims=True)
pattern = cache["blocks"][0]["attn"]["hook_pattern"]
print("pattern = softmax(scores): largest difference", f"{np.abs(softmax - pattern).max():.1e}")

# %% [markdown]
# ## 5. Its attention patterns, and those of a model that learned from text
#
# The fixture's weights are random, so what it retrieves depends on the
# accidental match of random queries and random keys. A model trained on text
# learns *where to look*. We compare with the course model (`data/course`, a
# `tiny` model trained on the pydoc corpus) when it is there, and otherwise
# train a small stand-in for a few hundred steps right here.

# %%
course_dir = data_dir() / "course"
t0 = time.perf_counter()
if (course_dir / "model.npz").exists() and (course_dir / "tokenizer.json").exists():
    trained, tok = load_model(course_dir / "model.npz"), Tokenizer.load(course_dir / "tokenizer.json")
    label = "course model"
else:
    train_text, val_text = split_text(load_corpus("pydoc"))
    tok = Tokenizer.train(train_text, 511, special_tokens=["<|endoftext|>"])
    cfg = ModelConfig(vocab_size=tok.vocab_size, context_length=32, d_model=64, n_layers=2, n_heads=4)
    trained = GPT(cfg, seed=0)
    state = Trainer(trained, np.array(tok.encode_ordinary(train_text)), config=TrainConfig(
        steps=200, batch_size=8, lr=1e-2, min_lr=1e-3, warmup=20, eval_every=0), log=None).run()
    label = "stand-in model"
    print(f"trained for {state.step} steps: loss {state.losses[0][1]:.2f} -> {state.losses[-1][1]:.2f}")
print(f"{label}: {trained}  ({time.perf_counter() - t0:.0f} s)")

# %%
text = "The return statement leaves the current function call with the expression list"
text_ids = np.array([tok.encode(text)[:16]])
labels = [tok.decode([i]) for i in text_ids[0]]
_, trained_cache = forward(trained.params, trained.config, text_ids, need_cache=True)
_, random_cache = forward(model.params, model.config, ids[:1], need_cache=True)


def patterns(c):
    """(L, H, T, T) for the first sequence of a forward cache."""
    return np.stack([b["attn"]["hook_pattern"][0] for b in c["blocks"]])


display(figures.attention_patterns(patterns(random_cache), [str(i) for i in ids[0]],
                               title="the fixture (random GPT-2 weights), on its random ids"))
display(figures.attention_patterns(patterns(trained_cache), labels, title=f"the {label}, on a sentence"))

# %% [markdown]
# Pictures are easy to over-read, so here are three numbers per head, averaged
# over the query positions after the first (which can only look at itself):
#
# - **previous token**: the weight on the position just before, the simplest
#   positional lookup ("what came right before me?");
# - **first token**: the weight on position 0, where many heads park attention
#   they do not need;
# - **entropy**, as a fraction of its maximum (1 = spread evenly over all keys
#   the query may see, 0 = all on one key): how focused the retrieval is.

# %%
def head_stats(pattern):
    """Per head (L, H): mean weight on the previous token, on the first token, and normalised entropy."""
    L, H, T, _ = pattern.shape
    q = np.arange(1, T)  # query positions 1..T-1
    prev = pattern[:, :, q, q - 1].mean(-1)
    first = pattern[:, :, q, 0].mean(-1)
    ent = -(pattern * np.log(np.clip(pattern, 1e-12, None))).sum(-1)[:, :, q]  # (L, H, T-1)
    return prev, first, (ent / np.log(q + 1)).mean(-1)


for name, pat in (("fixture (random)", patterns(random_cache)), (label, patterns(trained_cache))):
    prev, first, ent = head_stats(pat)
    print(f"{name}:")
    for layer in range(pat.shape[0]):
        cells = "  ".join(f"H{h} prev {prev[layer, h]:.2f} first {first[layer, h]:.2f} "
                          f"entropy {ent[layer, h]:.2f}" for h in range(pat.shape[1]))
        print(f"  L{layer}  {cells}")
    best = np.unravel_index(prev.argmax(), prev.shape)
    print(f"  most previous-token head: L{best[0]}H{best[1]} ({prev[best]:.2f} of its attention)")

# %% [markdown]
# Read the two tables side by side. In the random model each head's weights
# depend on which random ids happen to meet, so its numbers carry no plan.
# (Spread evenly over the keys it may see, a head would put about a sixth on the
# previous token and a sixth on the first.) On this sentence the course model
# has no clear previous-token head: its best, L0H3 at 0.23, is barely above the
# random fixture's 0.21. Its clearest lookup by **position** is L1H0, which puts
# 0.52 of its weight, on average over the queries, on the first token (L2H0 and
# L2H2 about a third); only training can write such a lookup into `W_Q`, `W_K`
# and `W_pos`. Section 7 computes the same statistics on the real GPT-2,
# together with a test for *induction heads*, the heads that interpretability
# papers describe.

# %% [markdown]
# ## 6. Out to the ecosystem
#
# `export_gpt2` writes the same two files that `save_pretrained` writes, and
# `export_hf_tokenizer` writes a `tokenizer.json` that the Hugging Face
# `tokenizers` library reads: a byte-level BPE with our merges and our split
# regex. In it every byte is written as one printable character (GPT-2's
# `bytes_to_unicode`), which is why GPT-2 vocabularies are full of `Ġ`:

# %%
print([token_string(tok.vocab[i]) for i in tok.encode(" the return value\n")])

# %% [markdown]
# A model with a variant GPT-2 does not have is refused, with the variant named:

# %%
try:
    gpt2.export_gpt2(GPT(ModelConfig.preset("toy", positional="rope", ffn="swiglu")), tempfile.mkdtemp())
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# The trained model goes out and comes back unchanged (numpy only). With
# `transformers` and `torch` installed, the same folder loads as a
# `GPT2LMHeadModel` and gives the same logits and the same greedy text.

# %%
with tempfile.TemporaryDirectory() as folder:
    gpt2.export_gpt2(trained, folder, eos_token_id=tok.special_tokens["<|endoftext|>"])
    export_hf_tokenizer(tok, Path(folder) / "tokenizer.json")
    print("written:", sorted((p.name, p.stat().st_size) for p in Path(folder).iterdir()))
    again = gpt2.load_gpt2(folder)
    print("numpy -> files -> numpy, largest logit difference:",
          np.abs(again.forward(text_ids) - trained.forward(text_ids)).max())
    prompt = np.array([tok.encode("The return ")])
    ours = trained.generate(prompt, 12, temperature=0.0)
    print("ours (numpy):       ", repr(tok.decode(ours[0])))
    if HAVE_TORCH:
        import warnings

        warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm without ipywidgets
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        hf = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
        hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_file=str(Path(folder) / "tokenizer.json"))
        hf_prompt = torch.tensor([hf_tok("The return ")["input_ids"]])  # their tokenizer, our merges
        assert hf_prompt.tolist() == prompt.tolist()
        with torch.no_grad():
            hf_logits = hf(torch.from_numpy(text_ids)).logits.numpy()
            theirs = hf.generate(hf_prompt, attention_mask=torch.ones_like(hf_prompt), max_new_tokens=12,
                                 do_sample=False, pad_token_id=tok.special_tokens["<|endoftext|>"])
        print("transformers (torch):", repr(hf_tok.decode(theirs[0])))
        print("same ids:", theirs.tolist() == ours.tolist(), "| largest logit difference, numpy vs PyTorch:",
              f"{np.abs(hf_logits - trained.forward(text_ids)).max():.1e}")
    else:
        print("(install transformers and torch to load the export in PyTorch)")

# %% [markdown]
# From there the model is an ordinary PyTorch model, and everything built for
# PyTorch applies: the README's section *Going further* has the few commands to
# fine-tune it with `transformers`, or on several GPUs with `accelerate` or
# `torchrun`.
#
# ## 7. The real GPT-2, if you have it
#
# The 124 M-parameter GPT-2 is about 550 MB, so it is not part of this
# repository, and nothing here downloads it. If you have it on disk (any folder
# with its `config.json` and `model.safetensors`), point `MINITRANSFORMER_GPT2`
# at it; a copy in the Hugging Face cache is found by itself. To get one, on a
# machine with network access:
#
# ```bash
# python3 -m pip install huggingface_hub
# huggingface-cli download gpt2 config.json model.safetensors tokenizer.json --local-dir gpt2
# export MINITRANSFORMER_GPT2=$PWD/gpt2
# ```

# %%
def find_gpt2():
    """A GPT-2 checkpoint folder: $MINITRANSFORMER_GPT2, else the gpt2 snapshot in a Hugging Face cache."""
    candidates = []
    if os.environ.get("MINITRANSFORMER_GPT2"):
        candidates.append(Path(os.environ["MINITRANSFORMER_GPT2"]))
    hf_home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
    hub = Path(os.environ.get("HF_HUB_CACHE", hf_home / "hub"))
    candidates += sorted((hub / "models--gpt2" / "snapshots").glob("*"))
    for folder in candidates:
        if (folder / "config.json").exists() and (folder / "model.safetensors").exists():
            return folder
    return None


gpt2_dir = find_gpt2()
print(f"GPT-2 checkpoint: {gpt2_dir}" if gpt2_dir else
      "no GPT-2 checkpoint found: set MINITRANSFORMER_GPT2 to its folder to run this section (skipped)")

# %%
if gpt2_dir is not None:
    t0 = time.perf_counter()
    real = gpt2.load_gpt2(gpt2_dir)
    print(f"{real}, loaded in {time.perf_counter() - t0:.1f} s")
    encode = decode = None
    if (gpt2_dir / "tokenizer.json").exists() and importlib.util.find_spec("tokenizers"):
        import tokenizers

        real_tok = tokenizers.Tokenizer.from_file(str(gpt2_dir / "tokenizer.json"))
        encode, decode = (lambda s: real_tok.encode(s).ids), real_tok.decode
    if encode is not None:
        out = real.generate(np.array([encode("The capital of France is")]), 8, temperature=0.0)
        print("greedy:", repr(decode(out[0].tolist())))
    # induction: a random sequence seen twice; a head that, in the second copy, looks at the token
    # *after* the previous occurrence of the current token is an induction head
    n = min(24, real.config.context_length // 2)
    seq = np.random.default_rng(0).integers(real.config.vocab_size // 10, real.config.vocab_size, n)
    _, real_cache = forward(real.params, real.config, np.concatenate([seq, seq])[None], need_cache=True)
    pat = patterns(real_cache)  # (L, H, 2n, 2n)
    q = np.arange(n, 2 * n)  # queries in the second copy
    induction = pat[:, :, q, q - n + 1].mean(-1)  # weight on the token after the earlier occurrence
    prev, first, ent = head_stats(pat)
    for name, score in (("induction", induction), ("previous-token", prev)):
        top = np.dstack(np.unravel_index(np.argsort(-score, axis=None)[:5], score.shape))[0]
        print(f"top {name} heads:", ", ".join(f"L{a}H{b} {score[a, b]:.2f}" for a, b in top))

# %% [markdown]
# ## 8. Pitfalls
#
# - **Layouts.** (in, out) versus (out, in) is the most common loading bug; it
#   fails loudly only when the matrix is not square. `c_proj` in attention is
#   square (C, C): loaded transposed, it gives wrong numbers and no error. The
#   test with logits computed by the other library is what catches it.
# - **Two GELUs.** GPT-2 uses the tanh approximation (`gelu_new`); the exact erf
#   GELU differs by up to about 1e-3, enough to change a greedy continuation
#   after a while. `load_gpt2` refuses `activation_function="gelu"`.
# - **Tied heads in files.** `safetensors` cannot store two names for one tensor,
#   so `save_pretrained` drops `lm_head.weight`; a loader must tie it again.
# - **Small random weights test nothing.** With GPT-2's init (std 0.02) every
#   logit is close to zero and almost any bug passes a 1e-4 check; the fixture's
#   weights are scaled up so that every part of the network matters.
# - **Special ids.** `GPT2Config` defaults to id 50256 for `<|endoftext|>`; a small
#   vocabulary must say its own (`export_gpt2(..., eos_token_id=...)`).

# %% [markdown]
# ## 9. Exercises
#
# Each exercise has a stub and a check; the notebook runs with the stubs, and a
# check says *not done yet* until you write the code.
#
# - **core 1**: convert the fixture's attention weights to PyTorch's `nn.Linear`
#   layout.
# - **optional 2**: read a safetensors file with a dozen lines of numpy.

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
# **Core 1.** nanoGPT keeps q, k and v in one `nn.Linear(C, 3C)` called
# `c_attn`, whose weight is stored (out, in) = (3C, C). Write
# `to_linear(block)`: from our block parameters (`block["attn"]["W_Q"]`, ...)
# return that (3C, C) weight and its (3C,) bias, so that
# `x @ weight.T + bias` gives `[q | k | v]`.

# %%
def to_linear(block):
    raise NotImplementedError  # your code here: return weight (3C, C), bias (3C,)


def test_to_linear():
    block = model.params["blocks"][0]
    weight, bias = to_linear(block)
    x = np.random.default_rng(0).normal(size=(5, 32)).astype(np.float32)
    a = block["attn"]
    expect = np.concatenate([x @ a["W_Q"] + a["b_Q"], x @ a["W_K"] + a["b_K"], x @ a["W_V"] + a["b_V"]], axis=1)
    assert weight.shape == (96, 32), "nn.Linear stores (out, in)"
    np.testing.assert_allclose(x @ weight.T + bias, expect, atol=1e-5)


check("core 1 (to_linear)", test_to_linear)

# %% [markdown]
# **Optional 2.** Write your own safetensors reader, `read_safetensors(path)`,
# returning a dict of name -> numpy array: read the 8-byte length, parse the
# JSON header (skip `"__metadata__"`), and make each tensor with `np.frombuffer`
# from its byte range (`"F32"` is `"<f4"`). The check compares it with the
# package's reader on the fixture, then uses your arrays to split `c_attn` into
# the `W_Q`, `W_K` and `W_V` that `load_gpt2` made.

# %%
def read_safetensors(path):
    raise NotImplementedError  # your code here


def test_read_safetensors():
    mine = read_safetensors(FIXTURE / "model.safetensors")
    theirs = safetensors_io.load_file(FIXTURE / "model.safetensors")
    assert sorted(mine) == sorted(theirs), "every tensor, and no __metadata__"
    for name in theirs:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    W_Q, W_K, W_V = np.split(mine["transformer.h.1.attn.c_attn.weight"], 3, axis=1)
    np.testing.assert_array_equal(W_K, model.params["blocks"][1]["attn"]["W_K"])


check("optional 2 (read_safetensors)", test_read_safetensors)

# %% [markdown]
# ## 10. Further reading
#
# - Alec Radford et al. (2019). *Language Models are Unsupervised Multitask
#   Learners* (GPT-2).
# - Hugging Face, `transformers/models/gpt2/modeling_gpt2.py`: the names this
#   notebook maps, and `Conv1D` in `pytorch_utils.py`.
# - The `safetensors` format specification (github.com/huggingface/safetensors),
#   which `minitransformer/interop/safetensors.py` implements in numpy.
# - Catherine Olsson et al. (2022). *In-context Learning and Induction Heads*
#   (Transformer Circuits Thread): the heads that section 7 looks for.
# - Andrej Karpathy, *nanoGPT* (`from_pretrained` in `model.py`): the same
#   loading, into PyTorch `nn.Linear` layers, with the transposes.
#
# In the package: `minitransformer/interop/gpt2.py` (the table, `load_gpt2`,
# `export_gpt2`), `interop/safetensors.py`, `interop/hf_tokenizer.py`, and
# `tests/fixtures/gpt2/make_fixture.py` (how the fixture was made).
