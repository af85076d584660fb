"""``minitransformer train``: a tokenizer and a model trained on a built-in corpus, saved under ``--out``.

A run is a folder: ``model.npz`` (the checkpoint, one file), ``tokenizer.json`` and
``loss.png``. ``--resume`` continues it; what may change then is what does not
change the run itself:

- ``--steps`` is the total to reach (``--steps 1200`` after 600 trains 600 more; the
  cosine schedule is stretched to the new total from there on);
- ``--lr`` the new peak learning rate (the floor keeps its ratio), e.g. after divergence;
- ``--eval-every`` and ``--checkpoint-every``.

The model's shape (``--preset``, ``--vocab-size``), the tokenizer, ``--corpus``,
``--batch-size`` and ``--seed`` belong to the run: giving a different one with
``--resume`` is refused with an error that says so.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from .cli_launch import launch_ranks
from .core.config import ModelConfig
from .core.fileio import atomic_write, remove_stale_temporaries
from .core.tree import to_float64
from .model import GPT
from .tokenizer import Tokenizer
from .training import (TrainConfig, Trainer, TrainingDiverged, TrainingInterrupted, data, evaluate_tokens,
                       read_metadata, resume, save_model, tokenizer_fingerprint, unigram_loss)
from .training.checkpoint import check_tokenizer

DEFAULTS = {"preset": "tiny", "steps": 600, "batch_size": 16, "lr": 3e-3, "seed": 0, "corpus": data.DEFAULT_CORPUS}
MIN_VOCAB = 257  # 256 byte ids + <|endoftext|>: the least a byte-level tokenizer can have
SMALL_PRESET_VOCAB = 300  # used for presets whose vocabulary is smaller than that (toy: 64)


class RunFailed(RuntimeError):
    """A command that started well and failed while working (exit code 1)."""


def folder_path(value, option: str) -> Path:
    """``value`` as the path of a folder, which may not exist yet (nothing is created), or a ValueError
    naming ``option`` if it is a file."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file, not a folder; give a folder (it is created if missing)")
    return path


def output_dir(value, option: str) -> Path:
    """``value`` as a folder that exists (created if needed), or a ValueError naming ``option``."""
    path = folder_path(value, option)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # not writable, or a file where a folder should be: the run cannot go on
        raise RunFailed(f"{option}: cannot create the folder {path} ({exc.strerror or exc})") from None
    return path


def input_file(value, option: str) -> Path:
    """``value`` as an existing file, or a ValueError naming ``option`` and what is wrong."""
    path = Path(value)
    if not path.exists():
        raise ValueError(f"{option} {path} is missing: there is no such file")
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give the file inside it")
    return path


def count(least: int):
    """An argparse type: an int >= ``least`` (0: a count that may be zero; 1: positive)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{value} is below {least}; give a whole number >= {least}")
        return value
    parse.__name__ = "int"
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0 < value < float("inf")):
        raise argparse.ArgumentTypeError(f"{text} must be a finite number > 0")
    return value


positive_float.__name__ = "number"


def model_config(preset: str, vocab_size) -> ModelConfig:
    """The preset's config, with a vocabulary a byte-level tokenizer can fill."""
    base = ModelConfig.preset(preset)
    if vocab_size is None and base.vocab_size < MIN_VOCAB:
        print(f"note: preset {preset!r} has {base.vocab_size} ids, fewer than a byte-level tokenizer needs "
              f"({MIN_VOCAB}); training it with --vocab-size {SMALL_PRESET_VOCAB}")
        vocab_size = SMALL_PRESET_VOCAB
    if vocab_size is not None and vocab_size < MIN_VOCAB:
        raise ValueError(f"--vocab-size {vocab_size} is too small: a byte-level tokenizer needs at least {MIN_VOCAB} "
                         "ids (256 bytes + <|endoftext|>)")
    return base if vocab_size is None else base.replace(vocab_size=vocab_size)


def _resume_command(out: Path) -> str:
    return f"minitransformer train --out {shlex.quote(str(out))} --resume"


def _check_unchanged(args, meta: dict, ckpt: Path) -> None:
    """Refuse options given with --resume that would make a different run."""
    info, tc = meta.get("extra", {}), meta["train_config"]
    recorded = {"batch_size": tc.get("batch_size"), "seed": tc.get("seed"), "corpus": info.get("corpus"),
                "vocab_size": meta["model_config"].get("vocab_size"), "preset": info.get("preset")}
    for name, old in recorded.items():
        new = getattr(args, name)
        if name == "preset" and new is not None:
            shape = ModelConfig.preset(new).replace(vocab_size=meta["model_config"]["vocab_size"]).to_dict()
            same = shape == meta["model_config"]
        else:
            same = new is None or old is None or new == old
        if not same:
            flag = "--" + name.replace("_", "-")
            was = old if old is not None else "another shape"  # a recorded 0 (a seed) is named too
            raise ValueError(f"{flag} {new} differs from the run in {ckpt.parent} ({was}); it cannot "
                             f"change on --resume (what can: --steps, --lr, --eval-every, --checkpoint-every). "
                             f"Drop {flag}, or start a new run with another --out")


def _new_run(args, out: Path, tok_path: Path, ckpt: Path, make_trainer=Trainer, is_writer: bool = True):
    if ckpt.exists():
        raise ValueError(f"{out} already holds a run ({ckpt.name}); continue it with --resume (--steps is the total to "
                         "reach), or give another --out")
    opt = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in DEFAULTS.items()}
    config = model_config(opt["preset"], args.vocab_size)
    steps = opt["steps"]
    eval_every = max(1, steps // 10) if args.eval_every is None else args.eval_every
    # every setting is checked here, before the tokenizer is trained and anything is written
    tc = TrainConfig(steps=steps, batch_size=opt["batch_size"], lr=opt["lr"], seed=opt["seed"],
                     eval_every=eval_every, checkpoint_every=args.checkpoint_every or 0)
    tokens = data.corpus_tokens(opt["corpus"], config.vocab_size, config.context_length, verbose=True)
    tok = tokens.tokenizer
    if tok.vocab_size != config.vocab_size:
        print(f"note: corpus {opt['corpus']!r} filled {tok.vocab_size} of {config.vocab_size} ids; the model uses "
              f"{tok.vocab_size}")
        config = config.replace(vocab_size=tok.vocab_size)
    if is_writer:
        output_dir(out, "--out")
        tok.save(tok_path)
    model = GPT(config, seed=opt["seed"])
    if args.dtype == "float64":  # for checking that N ranks compute what one process does
        model.params = to_float64(model.params)
    trainer = make_trainer(model, tokens.train, tokens.val, tc)
    trainer.tokenizer_sha256 = tokenizer_fingerprint(tok)
    trainer.run_info = {"preset": opt["preset"], "corpus": opt["corpus"]}
    print(trainer.model)
    return trainer, tokens, opt


def _resumed_run(args, out: Path, tok_path: Path, ckpt: Path, make_trainer=Trainer, is_writer: bool = True):
    if not ckpt.exists():
        raise ValueError(f"--resume: there is no checkpoint {ckpt} to continue; drop --resume to start a new run")
    meta = read_metadata(ckpt)
    if meta["weights_only"]:
        raise ValueError(f"{ckpt} holds model weights only (an export), not a training run; it cannot be resumed")
    _check_unchanged(args, meta, ckpt)
    tok = Tokenizer.load(input_file(tok_path, "the run's tokenizer"))
    check_tokenizer(meta, tok, ckpt)
    info = meta.get("extra", {})
    opt = {"preset": info.get("preset", "?"), "corpus": info.get("corpus", args.corpus or DEFAULTS["corpus"]),
           "seed": meta["train_config"]["seed"]}
    config = meta["model_config"]
    tokens = data.corpus_tokens(opt["corpus"], config["vocab_size"], config["context_length"], tokenizer=tok)
    trainer = resume(ckpt, tokens.train, tokens.val, make_trainer=make_trainer, steps=args.steps, lr=args.lr, eval_every=args.eval_every,
                     checkpoint_every=args.checkpoint_every)
    trainer.run_info = dict(info)
    s, total = trainer.state.step, trainer.config.steps
    print(f"resumed at step {s}" + (f"; training to step {total}" if total > s else
                                    ": the run is complete; pass a larger --steps to train longer"))
    return trainer, tokens, opt


def _check_ranks(args) -> None:
    """Before launching ``--nproc`` ranks: PyTorch is there, and the batch splits over them."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise ValueError("--nproc needs PyTorch for the communication between ranks: pip install torch (the CPU "
                         "build is enough)")
    ckpt = Path(args.out) / "model.npz"
    batch = args.batch_size or DEFAULTS["batch_size"]
    if args.resume and ckpt.exists():
        batch = read_metadata(ckpt)["train_config"]["batch_size"]
    if batch % args.nproc:
        fits = [n for n in range(1, batch + 1) if batch % n == 0 and n <= 2 * args.nproc]
        raise ValueError(f"the batch of {batch} rows does not split over {args.nproc} ranks: use --nproc "
                         f"{' or '.join(map(str, fits[-2:]))}" + ("" if args.resume else ", or a --batch-size that "
                                                                   f"is a multiple of {args.nproc}"))


def train(args) -> int:
    """Train (or continue) a run in ``--out``; exit 130 with a saved checkpoint on Ctrl-C.

    Under torchrun (``WORLD_SIZE`` > 1) every process is one data-parallel rank
    (`training.distributed`); only rank 0 prints and writes files. ``--nproc N``
    relaunches the command as N such processes.
    """
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # become N processes under torchrun
        _check_ranks(args)
        argv = args.argv
        rest = [a for i, a in enumerate(argv) if not (a.startswith("--nproc") or argv[i - 1:i] == ["--nproc"])]
        return launch_ranks(args.nproc, rest)
    if "WORLD_SIZE" not in os.environ:
        if args.zero1:
            raise ValueError("--zero1 shards the optimizer over several processes: launch with torchrun "
                             "--nproc-per-node N (or add --nproc N)")
        return _train(args, Trainer, is_writer=True)
    from .training import distributed

    try:
        ctx = distributed.init_from_env(args.dist_timeout)
    except RuntimeError as exc:  # torch's DistNetworkError: rank 0 cannot listen on MASTER_PORT
        if "address already in use" not in str(exc).lower():
            raise
        raise ValueError(f"port {os.environ.get('MASTER_PORT')} is already in use on this machine: give torchrun "
                         "another --master-port, or --standalone to pick a free one") from None
    make = functools.partial(distributed.DistributedTrainer, ctx=ctx, zero1=args.zero1, bucket_mb=args.bucket_mb)
    quiet = ctx.rank != 0
    try:
        with contextlib.redirect_stdout(open(os.devnull, "w")) if quiet else contextlib.nullcontext():
            return _train(args, make, is_writer=not quiet)
    except distributed.PeerLostError as exc:
        raise RunFailed(str(exc)) from None
    finally:
        distributed.shutdown()


def _export_dir(value, out: Path):
    """``--export``'s folder, checked before training starts (created only at the end); None if not asked for."""
    if not value:
        return None
    path = folder_path(value, "--export")
    if path.resolve() == out.resolve():
        raise ValueError(f"--export {path} is the run's own folder (--out): the weights-only export would replace "
                         "the checkpoint that --resume continues from; give another folder")
    return path


def _train(args, make_trainer, is_writer: bool) -> int:
    out = folder_path(args.out, "--out")  # created once the settings are checked (`_new_run`)
    export = _export_dir(args.export, out)
    tok_path, ckpt = out / "tokenizer.json", out / "model.npz"
    trainer, tokens, opt = (_resumed_run if args.resume else _new_run)(args, out, tok_path, ckpt, make_trainer,
                                                                        is_writer)
    if is_writer:  # left by a writer that was killed mid-write (the checkpoint's own are removed when it saves)
        for path in (tok_path, out / "loss.png"):
            remove_stale_temporaries(path)
    tok, train_ids, val_ids = tokens.tokenizer, tokens.train, tokens.val
    if not tokens.held_out:
        print(f"note: corpus {opt['corpus']!r} is too small for a held-out set; validation uses the training text")
    baseline = unigram_loss(train_ids, val_ids, trainer.model.config.vocab_size)
    print(f"corpus {opt['corpus']!r}: {len(train_ids):,} training tokens, {len(val_ids):,} validation tokens "
          f"(vocab {tok.vocab_size}); unigram baseline {baseline:.3f} nats/token")
    try:
        state = trainer.run(checkpoint_path=ckpt, progress=is_writer, stop_at=args.stop_at)
    except TrainingInterrupted as exc:
        by = "" if exc.signal_name == "SIGINT" else f" by {exc.signal_name}"
        if is_writer:  # one rank says it, not every one
            print(f"\ninterrupted{by} at step {exc.step}; the checkpoint {ckpt} holds it. Continue with:\n  "
                  f"{_resume_command(out)}", file=sys.stderr)
        return exc.exit_code  # 130 for Ctrl-C, 143 for SIGTERM
    except TrainingDiverged as exc:
        if not is_writer:  # every rank diverged at the same step; rank 0 says it, once
            return 1
        lr = trainer.config.lr / 10
        hint = (f"continue from it with a lower learning rate:\n  {_resume_command(out)} --lr {lr:g}" if exc.checkpoint
                else f"start again with a lower learning rate (--lr {lr:g}) in a new --out")
        raise RunFailed(f"{exc}\n{hint}") from None
    if hasattr(trainer, "describe"):  # a data-parallel trainer says what it sent
        print(trainer.describe())
    if not is_writer:
        return 0
    fresh = state.evals and state.evals[-1][0] == state.step  # else evaluated now, not an older step's figure
    final = state.evals[-1][1] if fresh else trainer.evaluate()
    print(f"validation loss {final:.3f} nats/token vs unigram baseline {baseline:.3f}; saved {ckpt} and {tok_path}")
    if state.step < trainer.config.steps:
        print(f"stopped at step {state.step} of {trainer.config.steps} (--stop-at); continue with:\n  "
              f"{_resume_command(out)}")
    from .figures.training import loss_curves

    fig = loss_curves(state.losses, state.evals, baseline, title=f"{opt['preset']} on {opt['corpus']!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write(out / "loss.png", buf.getvalue())
    if export is not None:
        export = output_dir(export, "--export")
        save_model(export / "model.npz", trainer.model, tokenizer=tok, extra={
            "val_loss": final, "val_loss_all_windows": evaluate_tokens(trainer.model, val_ids),
            "unigram_baseline": baseline, "corpus": opt["corpus"], "steps": state.step,
            "python": sys.version.split()[0],
            "command": "minitransformer train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else ""})
        tok.save(export / "tokenizer.json")
        print(f"exported the model (weights only) and its tokenizer to {export}")
    prompt = np.array([tok.encode_ordinary(args.prompt) or [tok.vocab_size - 1]])
    sample = trainer.model.generate(prompt, 60, temperature=0.8, top_k=40, seed=opt["seed"], crop=True)
    print(f"sample: {tok.decode(sample[0])!r}")
    return 0


DEMO_RUN = "demo"  # recorded in the checkpoint's "extra" as "made_by": a folder demo --train may replace


def check_demo_folder(value) -> Path:
    """``demo --train``'s ``--out``, refused if it holds a run that `train` made (the demo replaces only its own)."""
    out = folder_path(value, "--out")
    ckpt = out / "model.npz"
    if ckpt.exists():
        try:
            made_by = read_metadata(ckpt).get("extra", {}).get("made_by")
        except ValueError:
            made_by = None
        if made_by != DEMO_RUN:
            raise ValueError(f"--out {out} holds a model that demo --train did not make ({ckpt.name}); the demo replaces "
                             "only its own earlier model. Give another --out (the default is runs/demo), or delete "
                             f"{ckpt} if it may go")
    return out


def train_for_demo(args, out: Path):
    """Train a tokenizer and a tiny model for ``demo --train``; keep both in ``out``, the folder
    `check_demo_folder` accepted (the demo checks it first, before the trace writes anything)."""
    config = ModelConfig.preset("tiny")
    tc = TrainConfig(steps=args.steps, eval_every=max(1, args.steps // 4), seed=args.seed)  # checked before any write
    tokens = data.corpus_tokens(args.corpus, config.vocab_size, config.context_length, verbose=True)
    tok, train_ids, val_ids = tokens.tokenizer, tokens.train, tokens.val
    config = config.replace(vocab_size=tok.vocab_size)  # a small corpus may stop training before 1,024 ids
    if not tokens.held_out:
        print(f"note: corpus {args.corpus!r} is too small for a held-out set; validation uses the training text")
    out = output_dir(out, "--out")
    ckpt = out / "model.npz"
    if ckpt.exists():  # the last demo's model goes first, so it never sits beside the new tokenizer
        ckpt.unlink()
    tok.save(out / "tokenizer.json")
    trainer = Trainer(GPT(config, seed=args.seed), train_ids, val_ids, tc)
    trainer.tokenizer_sha256 = tokenizer_fingerprint(tok)
    trainer.run_info = {"preset": "tiny", "corpus": args.corpus, "made_by": DEMO_RUN}
    state = trainer.run(checkpoint_path=ckpt, progress=True)
    meta = {"extra": {"val_loss": state.evals[-1][1], "unigram_baseline": unigram_loss(train_ids, val_ids,
                      config.vocab_size), "steps": state.step, "corpus": args.corpus}}
    print(f"kept the trained model in {out}/ (model.npz, tokenizer.json); continue it with\n  "
          f"{_resume_command(out)} --steps {2 * args.steps}\nor sample from it with\n  minitransformer generate "
          f"--checkpoint {shlex.quote(str(ckpt))} --tokenizer {shlex.quote(str(out / 'tokenizer.json'))}")
    return trainer.model, tok, meta
