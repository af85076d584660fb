"""Checkpoints on disk: one file that a kill cannot tear, and one clear ValueError for every damaged file."""

import io
import json
import os
import pickle
import random
import signal
import time
import zipfile

import numpy as np
import pytest

from minitransformer.model import GPT
from minitransformer.tokenizer import Tokenizer
from minitransformer.training import TrainConfig, Trainer, load_model, read_metadata, resume, save_checkpoint, save_model
from minitransformer.training.checkpoint import (META_KEY, _arrays_sha256, check_tokenizer, read_checkpoint,
                                                 tokenizer_fingerprint, upgrade_checkpoint)

TOKENS = np.tile(np.arange(64), 40)


def _trainer(preset="toy", steps=2):
    t = Trainer(GPT(preset, seed=0), TOKENS % 64, config=TrainConfig(steps=steps, batch_size=2, eval_every=0), log=None)
    t.run()
    return t


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """The bytes of a training checkpoint and of a weights-only file."""
    d = tmp_path_factory.mktemp("ckpt")
    t = _trainer()
    save_checkpoint(d / "train.npz", t)
    save_model(d / "model.npz", t.model)
    return {"train": (d / "train.npz").read_bytes(), "model": (d / "model.npz").read_bytes()}


def test_round_trip_keeps_everything(tmp_path):
    t = _trainer()
    save_checkpoint(tmp_path / "c.npz", t)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    back = resume(tmp_path / "c.npz", TOKENS % 64, log=None)
    assert back.state.step == 2 and back.opt.t == t.opt.t and np.array_equal(back.opt.buffer, t.opt.buffer)
    assert np.array_equal(back.opt.m, t.opt.m) and np.array_equal(back.opt.v, t.opt.v)
    meta = read_metadata(tmp_path / "c.npz")
    assert meta["version"] == 2 and len(meta["sha256"]) == 64


# --------------------------------------------------------------------------- damaged and foreign files
def _rewrite(raw: bytes, change) -> bytes:
    """The checkpoint ``raw`` with its metadata and arrays passed through ``change(meta, arrays)``;
    the checksum is recomputed unless ``change`` set it, so only the change itself is wrong."""
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes())
    keep_sha = change(meta, arrays)
    if not keep_sha:
        meta["sha256"] = _arrays_sha256(arrays)
    buf = io.BytesIO()
    np.savez(buf, **{META_KEY: np.frombuffer(json.dumps(meta).encode(), np.uint8)}, **arrays)
    return buf.getvalue()


def _flip(raw: bytes, where) -> bytes:
    """Flip one bit: at a fraction of the file, or in the n-th occurrence of a byte string."""
    b = bytearray(raw)
    if isinstance(where, float):
        at = int(len(b) * where)
    else:
        needle, nth = where
        at = raw.find(needle) if nth == 0 else raw.rfind(needle)
    b[at + 3] ^= 0x10
    return bytes(b)


def _drop(field):
    def change(meta, arrays):
        if field in arrays:
            del arrays[field]
        else:
            del meta[field]
        return field == "sha256"
    return change


def _swap_arrays_from_another_model(meta, arrays):
    other = GPT("toy", seed=1).named_parameters()
    arrays.update({f"params.{n}": a for n, a in other.items()})
    return True  # keep the old checksum: arrays and metadata no longer belong together


def _another_shape(meta, arrays):
    meta["model_config"]["d_model"] = 64
    meta["model_config"]["d_ff"] = None


def _npz_with(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    return buf.getvalue()


DAMAGE = {  # name: (make the file's bytes from the good ones, words the message must contain)
    "zero_bytes": (lambda raw: b"", "the file is empty (0 bytes)"),
    "truncated_half": (lambda raw: raw[: len(raw) // 2], "damaged (truncated or overwritten?)"),
    "truncated_tail": (lambda raw: raw[:-7], "damaged (truncated or overwritten?)"),
    "flipped_bits_in_data": (lambda raw: _flip(raw, 0.5), "damaged"),
    "flipped_bits_in_metadata": (lambda raw: _flip(raw, (b'"format"', 0)), "damaged"),
    "flipped_bits_in_a_local_header": (lambda raw: _flip(raw, (b"params.embed.W_E", 0)), "damaged"),
    "flipped_bits_in_the_directory": (lambda raw: _flip(raw, (b"params.embed.W_E", -1)), "damaged"),
    "npy_not_npz": (lambda raw: _npy(), "a single .npy array, not a .npz"),
    "pickle": (lambda raw: pickle.dumps({"params": np.zeros(2)}), "it is a Python pickle"),
    "object_array_inside": (lambda raw: _npz_with(x=np.array([{"a": 1}], dtype=object)), "pickled Python objects"),
    "foreign_npz": (lambda raw: _npz_with(weights=np.zeros(3)), "without minitransformer metadata (arrays: weights)"),
    "text": (lambda raw: b"hello, world", "not a .npz (zip) file"),
    "metadata_not_json": (lambda raw: _npz_with(**{META_KEY: np.frombuffer(b"{oops", np.uint8)}), "not valid JSON"),
    "wrong_format": (lambda raw: _rewrite(raw, lambda m, a: m.update(format="other")), '"format"'),
    "future_version": (lambda raw: _rewrite(raw, lambda m, a: m.update(version=7)), "checkpoint version 7"),
    "missing_model_config": (lambda raw: _rewrite(raw, _drop("model_config")), "missing the field(s) model_config"),
    "missing_rng": (lambda raw: _rewrite(raw, _drop("rng")), "missing the field(s) rng"),
    "missing_sha256": (lambda raw: _rewrite(raw, _drop("sha256")), "missing the field(s) sha256"),
    "missing_opt_m": (lambda raw: _rewrite(raw, _drop("opt.m")), "without the optimizer array(s) opt.m"),
    "missing_a_weight": (lambda raw: _rewrite(raw, _drop("params.embed.W_E")), "no array 'embed.W_E'"),
    "arrays_of_another_model": (lambda raw: _rewrite(raw, _swap_arrays_from_another_model), "do not match the sha256"),
    "config_of_another_model": (lambda raw: _rewrite(raw, _another_shape), "(another model?)"),
    "invalid_config": (lambda raw: _rewrite(raw, lambda m, a: m["model_config"].update(n_heads=5)), "model_config is "
                       "invalid"),
}


@pytest.mark.parametrize("loader", ["load_model", "resume", "read_metadata"])
@pytest.mark.parametrize("case", list(DAMAGE))
def test_every_damaged_or_foreign_file_is_one_clear_value_error(tmp_path, saved, case, loader):
    make, words = DAMAGE[case]
    path = tmp_path / "model.npz"
    path.write_bytes(make(saved["train"]))
    load = {"load_model": load_model, "read_metadata": read_metadata,
            "resume": lambda p: resume(p, TOKENS % 64, log=None)}[loader]
    if loader == "read_metadata" and case in ("missing_a_weight", "config_of_another_model", "invalid_config"):
        read_metadata(path)  # the file itself is whole; only building the model finds the mismatch
        return
    with pytest.raises(ValueError) as err:
        load(path)
    assert type(err.value) is ValueError and err.value.__cause__ is None
    message = str(err.value)
    assert message.startswith(f"{path} is not a usable checkpoint: ") and words in message, message


def test_a_directory_and_a_missing_file_are_named(tmp_path):
    with pytest.raises(ValueError, match=f"{tmp_path} is not a usable checkpoint: it is a directory"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match=f"no checkpoint at {tmp_path / 'x.npz'}: the file is missing"):
        load_model(tmp_path / "x.npz")


def test_weights_only_files_cannot_be_resumed(tmp_path, saved):
    (tmp_path / "m.npz").write_bytes(saved["model"])
    assert load_model(tmp_path / "m.npz").config.d_model == 32
    with pytest.raises(ValueError, match="holds only model weights"):
        resume(tmp_path / "m.npz", TOKENS % 64, log=None)


def test_version_1_pairs_are_named_and_upgraded(tmp_path):
    model = GPT("toy", seed=3)
    np.savez(tmp_path / "old.npz", **{f"params.{n}": a for n, a in model.named_parameters().items()})
    (tmp_path / "old.npz.json").write_text(json.dumps({"format": "minitransformer-checkpoint", "version": 1,
                                                       "weights_only": True, "model_config": model.config.to_dict(),
                                                       "extra": {"note": 1}}))
    with pytest.raises(ValueError, match="version-1 checkpoint .*upgrade_checkpoint"):
        load_model(tmp_path / "old.npz")
    upgrade_checkpoint(tmp_path / "old.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npz"]
    back = load_model(tmp_path / "old.npz")
    assert np.array_equal(back.named_parameters()["embed.W_E"], model.named_parameters()["embed.W_E"])
    assert read_metadata(tmp_path / "old.npz")["extra"] == {"note": 1}


def test_the_tokenizer_fingerprint_tells_tokenizers_apart(tmp_path):
    a = Tokenizer.train("the cat sat on the mat; " * 20, 262, special_tokens=["<|endoftext|>"])
    b = Tokenizer.train("a dog ran in the fog; " * 20, 262, special_tokens=["<|endoftext|>"])
    a.save(tmp_path / "a.json")
    assert tokenizer_fingerprint(a) == tokenizer_fingerprint(Tokenizer.load(tmp_path / "a.json"))
    assert tokenizer_fingerprint(a) != tokenizer_fingerprint(b) and a.vocab_size == b.vocab_size
    model = GPT(GPT("toy").config.replace(vocab_size=a.vocab_size))
    save_model(tmp_path / "m.npz", model, tokenizer=a)
    meta = read_metadata(tmp_path / "m.npz")
    check_tokenizer(meta, a, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="the tokenizer is not the one .*m.npz was trained with"):
        check_tokenizer(meta, b, tmp_path / "m.npz")


# --------------------------------------------------------------------------- kills while saving
@pytest.mark.skipif(not hasattr(os, "fork"), reason="kills a forked child that is saving (POSIX)")
def test_a_kill_at_any_instant_leaves_a_whole_checkpoint(tmp_path):
    """SIGKILL a process that saves in a loop, at random instants (20, or more until 3 of them landed
    during a write); each time, what is on disk must be one whole checkpoint (its arrays match its
    metadata and its step), never a mix."""
    t = Trainer(GPT("tiny", seed=0), np.arange(1000) % 1024, config=TrainConfig(steps=1, eval_every=0), log=None)
    path = tmp_path / "c.npz"
    W_E = t.model.params["embed"]["W_E"]

    def save(k):
        W_E[0, 0] = k  # the arrays say which save they belong to...
        t.state.step = k  # ...and so does the metadata
        save_checkpoint(path, t)

    save(0)
    rng, last, mid_write, rounds = random.Random(0), 0, 0, 0
    while rounds < 20 or (mid_write < 3 and rounds < 300):  # how often a kill lands mid-write varies by disk
        rounds += 1
        pid = os.fork()
        if pid == 0:  # the child: save, save, save, until killed
            try:
                k = last
                while True:
                    k += 1
                    save(k)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.02, 0.2))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        mid_write += any(p.name.endswith(".tmp") for p in tmp_path.iterdir())
        meta, arrays = read_checkpoint(path)  # raises if the file were torn or mixed
        step = meta["state"]["step"]
        assert step >= last and arrays["params.embed.W_E"][0, 0] == step
        last = step
    print(f"{mid_write} of {rounds} kills landed during a write; {last} saves completed in all")
    assert last >= 5 and mid_write >= 3  # the kills landed during writes, and saving went on between them
    save(last + 1)  # the next save removes what killed writers left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
