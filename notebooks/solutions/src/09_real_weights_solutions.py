# Source of notebooks/solutions/09_real_weights_solutions.ipynb (jupytext py:percent).
# Edit this file, then rebuild the notebook with `python notebooks/build.py 09_real`.

# %% [markdown]
# # Solutions · Real weights · GPT-2 checkpoints in and out
#
# Worked solutions to the exercises of `09_real_weights.ipynb`. Try them there
# first: a solution read before the attempt teaches much less than one read
# after it.
#
# Each solution is followed by the notebook's own check, copied unchanged (a
# test keeps the two identical), so every check below must say *passed*.

# %%
import json
from pathlib import Path

import numpy as np

from minitransformer.interop import gpt2
from minitransformer.interop import safetensors as safetensors_io

# The notebook's setup, the part the checks use: the fixture GPT-2 (2 layers, width 32).
FIXTURE = Path("..") / ".." / "tests" / "fixtures" / "gpt2"  # this notebook runs from notebooks/solutions/
model = gpt2.load_gpt2(FIXTURE)


def check(name, test):
    """Run one exercise's test; a stub that is not written yet is reported, not an error."""
    try:
        test()
    except NotImplementedError:
        print(f"{name}: not done yet")
    else:
        print(f"{name}: passed")


# %% [markdown]
# ## Core 1: the attention weights in `nn.Linear`'s layout
#
# Our three matrices are (in, out) = (C, C), used as `x @ W`. Side by side,
# `[W_Q | W_K | W_V]` is (C, 3C) and `x @ [W_Q | W_K | W_V]` is `[q | k | v]`:
# that is GPT-2's `Conv1D` weight. `nn.Linear` computes `x @ weight.T`, so its
# weight is the transpose, (3C, C): the three matrices stacked *on top of each
# other* after each is transposed. The bias is the same either way, the three
# biases one after the other.
#
# The transpose is exactly what nanoGPT's `from_pretrained` does for the four
# `Conv1D` weights of each block (`c_attn`, `c_proj`, `c_fc` and the MLP's
# `c_proj`) when it loads GPT-2 into `nn.Linear` layers.

# %%
def to_linear(block):
    a = block["attn"]
    weight = np.concatenate([a["W_Q"], a["W_K"], a["W_V"]], axis=1).T  # (C, 3C) -> (3C, C): (out, in)
    bias = np.concatenate([a["b_Q"], a["b_K"], a["b_V"]])  # (3C,)
    return weight, bias


weight, bias = to_linear(model.params["blocks"][0])
print("weight", weight.shape, "bias", bias.shape)


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
# ## Optional 2: a safetensors reader in a dozen lines
#
# The file is: 8 bytes, a little-endian unsigned integer N; N bytes of JSON;
# then the data. Each header entry gives a tensor's `dtype`, `shape` and
# `data_offsets` = [begin, end), counted from the start of the *data*, that is
# from byte 8 + N of the file. `np.frombuffer` reads the bytes in place, without
# a copy, and `reshape` gives the shape (an empty shape is a scalar). The dtype
# names map onto little-endian numpy types; only the common ones are listed
# here. (BF16 has no numpy type: the package reads it as 16-bit integers and
# widens them to float32.)
#
# The arrays are views of one `bytes` object, so they are read-only; that is
# fine for loading. And nothing in the file is ever executed: the header is
# parsed as JSON, the data as numbers.

# %%
SAFETENSORS_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def read_safetensors(path):
    raw = Path(path).read_bytes()
    n = int.from_bytes(raw[:8], "little")  # the length of the JSON header
    header = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]  # offsets count from here
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":  # free-form strings, not a tensor
            continue
        begin, end = info["data_offsets"]
        array = np.frombuffer(data[begin:end], dtype=SAFETENSORS_DTYPES[info["dtype"]])
        tensors[name] = array.reshape(info["shape"])
    return tensors


mine = read_safetensors(FIXTURE / "model.safetensors")
print(f"{len(mine)} tensors, e.g. wte {mine['transformer.wte.weight'].shape} {mine['transformer.wte.weight'].dtype}")


def test_read_safetensors():
    mine = read_safetensors(FIXTURE / "model.safetensors")
    theirs = safetensors_io.load_file(FIXTURE / "model.safetensors")
    assert sorted(mine) == sorted(theirs), "every tensor, and no __metadata__"
    for name in theirs:
        np.testing.assert_array_equal(mine[name], theirs[name], err_msg=name)
    W_Q, W_K, W_V = np.split(mine["transformer.h.1.attn.c_attn.weight"], 3, axis=1)
    np.testing.assert_array_equal(W_K, model.params["blocks"][1]["attn"]["W_K"])


check("optional 2 (read_safetensors)", test_read_safetensors)
