"""The command line. Every command has ``--help``; bad input prints one ``error:`` line and exits 2.

    minitransformer demo                        # the course model traced through the five stages, then a continuation
    minitransformer demo --train                # the same with a freshly trained tiny model
    minitransformer trace "some text" --figures figs
    minitransformer train --preset tiny --steps 600 --out runs/tiny
    torchrun --standalone --nproc-per-node 2 -m minitransformer train --preset tiny --out runs/tiny2
    minitransformer generate --checkpoint runs/tiny/model.npz --tokenizer runs/tiny/tokenizer.json
    minitransformer tokenizer train --vocab-size 4096 --out tok.json
    minitransformer tokenizer encode --tokenizer tok.json "some text"

The demo prints the pipeline's five stages with their concepts (from
`concepts.py`), then steps through each one on the prompt with the course model
shipped in ``data/course``, shows the next-token distribution, generates a
continuation, and writes one figure per step into a folder.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Optional, Sequence

from .training import data
from .concepts import STAGES
from .tokenizer import Tokenizer

DEMO_PROMPT = "The return statement"
COURSE_DIR = "course"  # under data/: the course model and its tokenizer


def _course_files():
    d = data.data_dir() / COURSE_DIR
    return d / "model.npz", d / "tokenizer.json"


def load_course_model():
    """The course model shipped in ``data/course`` and its tokenizer: ``(model, tokenizer, metadata)``."""
    from .training import load_model, read_metadata

    model_path, tok_path = _course_files()
    if not model_path.exists() or not tok_path.exists():
        raise ValueError(f"the course model is missing ({model_path}); run `minitransformer demo --train` to train "
                         "a fresh one, or rebuild it with the command in data/README.md")
    return load_model(model_path), Tokenizer.load(tok_path), read_metadata(model_path)


def _train_fresh(args):
    """Train a tokenizer and a tiny model on the built-in corpus, with a progress bar."""
    from .core.config import ModelConfig
    from .model import GPT
    from .training import TrainConfig, Trainer, unigram_loss

    config = ModelConfig.preset("tiny")
    tokens = data.corpus_tokens(args.corpus, config.vocab_size, config.context_length)
    tok, train_ids, val_ids = tokens.tokenizer, tokens.train, tokens.val
    config = config.replace(vocab_size=tok.vocab_size)  # a small corpus may stop training before 1,024 ids
    if not tokens.held_out:
        print(f"note: corpus {args.corpus!r} is too small for a held-out set; validation uses the training text")
    trainer = Trainer(GPT(config, seed=args.seed), train_ids, val_ids,
                      TrainConfig(steps=args.steps, eval_every=max(1, args.steps // 4), seed=args.seed))
    state = trainer.run(progress=True)
    meta = {"extra": {"val_loss": state.evals[-1][1], "unigram_baseline": unigram_loss(train_ids, val_ids, config.vocab_size),
                      "steps": state.step, "corpus": args.corpus}}
    return trainer.model, tok, meta


def _save_figure(fig, path) -> None:
    from .core.fileio import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    atomic_write(path, buf.getvalue())


def _trace_and_print(model, tok, prompt: str, figures, color: bool, out) -> list:
    """Print every step of the pipeline on ``prompt``; save its figure into ``figures`` (if given)."""
    from .tokenizer.show import token_spans
    from .trace.pipeline import Pipeline

    written = []
    for k, step in enumerate(Pipeline(tok, model).steps(prompt), start=1):
        print(f"\n== step {k}: stage {step.stage.number}, {step.stage.name} -> {step.concept} ==", file=out)
        print(step.describe(), file=out)
        if k == 1:
            spans = token_spans(tok, prompt)
            print("token boundaries:", spans.ansi() if color else str(spans), file=out)
        if figures is not None:
            path = figures / f"{k:02d}_{step.stage.key}.png"
            _save_figure(step.show(), path)
            written.append(path)
    return written


def demo(args: argparse.Namespace) -> int:
    """The main job: the course model traced through the five stages on a prompt, then a continuation."""
    from pathlib import Path

    import numpy as np

    from .feedforward.output import probabilities

    out = sys.stdout
    color = args.color == "always" or (args.color == "auto" and out.isatty())
    print("minitransformer: five stages, five retrieval concepts\n", file=out)
    for s in STAGES:
        print(f"  {s.number}. {s.name:<22} {s.concept:<15} {s.data_in} -> {s.data_out}", file=out)

    if args.train:
        print(f"\nTraining a fresh tokenizer and `tiny` model on corpus {args.corpus!r} ({args.steps} steps)...", file=out)
        model, tok, meta = _train_fresh(args)
    else:
        model, tok, meta = load_course_model()
    extra = meta.get("extra", {})
    print(f"\nmodel: {model}", file=out)
    if "val_loss" in extra:
        print(f"trained on {extra.get('corpus', '?')!r} for {extra.get('steps', '?')} steps: validation loss "
              f"{extra['val_loss']:.3f} nats/token (unigram baseline {extra.get('unigram_baseline', float('nan')):.3f})",
              file=out)

    figures = Path(args.figures)
    figures.mkdir(parents=True, exist_ok=True)
    written = _trace_and_print(model, tok, args.prompt, figures, color, out)

    ids = np.array([tok.encode(args.prompt)[-model.config.context_length:]])
    logits = model.forward(ids)[0, -1]
    print("\n== the next-token distribution ==", file=out)
    for temperature in (1.0, 0.5):
        p = probabilities(logits, temperature=temperature)
        top = np.argsort(-p, kind="stable")[:8]
        print(f"  temperature {temperature}: " + ", ".join(f"{tok.decode([int(i)])!r} {p[i]:.1%}" for i in top), file=out)
    sample = model.generate(ids, args.max_new_tokens, temperature=0.8, top_k=40, seed=args.seed, crop=True)
    print(f"\n== a continuation (temperature 0.8, top-k 40, seed {args.seed}) ==\n{tok.decode(sample[0])}", file=out)
    print(f"\n{len(written)} figures written to {figures.resolve()}/", file=out)
    return 0


def trace_command(args: argparse.Namespace) -> int:
    """Trace text through the pipeline with the course model (or a saved one)."""
    from pathlib import Path

    from .training import load_model

    if args.checkpoint:
        if not args.tokenizer:
            raise ValueError("--checkpoint needs --tokenizer (the tokenizer.json saved next to it)")
        model, tok = load_model(args.checkpoint), Tokenizer.load(args.tokenizer)
    else:
        model, tok, _ = load_course_model()
    figures = None
    if args.figures:
        figures = Path(args.figures)
        figures.mkdir(parents=True, exist_ok=True)
    written = _trace_and_print(model, tok, args.text, figures, args.color == "always", sys.stdout)
    if written:
        print(f"\n{len(written)} figures written to {figures.resolve()}/")
    return 0


def tokenizer_train(args: argparse.Namespace) -> int:
    text = args.file.read() if args.file else data.load_corpus(args.corpus)
    tok = Tokenizer.train(
        text, args.vocab_size, pattern=args.pattern, special_tokens=args.special or (), verbose=not args.quiet
    )
    tok.save(args.out)
    print(f"{tok!r}: {tok.train_result}; saved to {args.out}")
    if args.vocab_listing:
        tok.save_vocab(args.vocab_listing)
        print(f"vocabulary listing written to {args.vocab_listing}")
    return 0


def tokenizer_encode(args: argparse.Namespace) -> int:
    tok = Tokenizer.load(args.tokenizer)
    ids = tok.encode(args.text, allowed_special="all" if args.allow_special else ())
    print(" ".join(map(str, ids)))
    return 0


def train(args: argparse.Namespace) -> int:
    """Train a model on the built-in corpus with a stage-1 tokenizer; save both under ``--out``.

    Under torchrun (``WORLD_SIZE`` > 1) every process is one data-parallel rank
    (`training.distributed`); only rank 0 prints and writes files.
    """
    import contextlib
    import functools
    import os

    from .training import distributed

    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # become N processes under torchrun
        rest = [a for i, a in enumerate(args.argv) if not (a.startswith("--nproc") or args.argv[i - 1:i] == ["--nproc"])]
        return distributed.launch(args.nproc, rest)

    ctx = distributed.init_from_env(args.dist_timeout)
    if ctx is None and args.zero1:
        raise ValueError("--zero1 shards the optimizer over several processes: launch with torchrun "
                         "--nproc-per-node N (or add --nproc N)")
    quiet = ctx is not None and ctx.rank != 0
    try:
        with contextlib.redirect_stdout(open(os.devnull, "w")) if quiet else contextlib.nullcontext():
            if ctx is None:
                return _train(args, None)
            make = functools.partial(distributed.DistributedTrainer, ctx=ctx, zero1=args.zero1,
                                     bucket_mb=args.bucket_mb)
            return _train(args, make, is_writer=ctx.rank == 0)
    except distributed.PeerLostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if ctx is not None:
            distributed.shutdown()


def _train(args: argparse.Namespace, make_trainer, is_writer: bool = True) -> int:
    from pathlib import Path

    import numpy as np

    from .core.config import ModelConfig
    from .core.tree import flatten, set_path
    from .model import GPT
    from .training import TrainConfig, Trainer, resume, unigram_loss

    make_trainer = make_trainer or Trainer
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {} if args.vocab_size is None else {"vocab_size": args.vocab_size}
    config = ModelConfig.preset(args.preset, **overrides)
    tok_path, ckpt = out / "tokenizer.json", out / "model.npz"
    saved = Tokenizer.load(tok_path) if args.resume and tok_path.exists() else None
    tokens = data.corpus_tokens(args.corpus, config.vocab_size, config.context_length, tokenizer=saved)
    tok, train_ids, val_ids = tokens.tokenizer, tokens.train, tokens.val
    if saved is None and is_writer:  # the tokenizer's vocabulary (merges + one special token) is the model's
        tok.save(tok_path)
    if not tokens.held_out:
        print(f"note: corpus {args.corpus!r} is too small for a held-out set; validation uses the training text")
    baseline = unigram_loss(train_ids, val_ids, config.vocab_size)
    print(f"corpus {args.corpus!r}: {len(train_ids):,} training tokens, {len(val_ids):,} validation tokens "
          f"(vocab {tok.vocab_size}); unigram baseline {baseline:.3f} nats/token")
    if args.resume and ckpt.exists():
        trainer = resume(ckpt, train_ids, val_ids, make_trainer=make_trainer)
        print(f"resumed at step {trainer.state.step}")
    else:
        tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         eval_every=max(1, args.steps // 10), checkpoint_every=args.checkpoint_every)
        model = GPT(config, seed=args.seed)
        if args.dtype == "float64":  # for checking that N ranks compute what one process does
            for name, a in flatten(model.params).items():
                set_path(model.params, name, a.astype(np.float64))
        trainer = make_trainer(model, train_ids, val_ids, tc)
        print(trainer.model)
    if hasattr(trainer, "describe"):
        print(trainer.describe())
    state = trainer.run(checkpoint_path=ckpt, stop_at=args.stop_at)
    if hasattr(trainer, "describe"):
        print(trainer.describe())
    if not is_writer:
        return 0
    final = state.evals[-1][1] if state.evals else trainer.evaluate()
    print(f"validation loss {final:.3f} nats/token vs unigram baseline {baseline:.3f}; saved {ckpt} and {tok_path}")
    from .core.fileio import atomic_write
    from .figures.training import loss_curves

    fig = loss_curves(state.losses, state.evals, baseline, title=f"{args.preset} on {args.corpus!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write(out / "loss.png", buf.getvalue())
    if args.export:
        from .training import save_model

        export = Path(args.export)
        export.mkdir(parents=True, exist_ok=True)
        from .training import evaluate_tokens

        save_model(export / "model.npz", trainer.model, extra={
            "val_loss": final, "val_loss_all_windows": evaluate_tokens(trainer.model, val_ids),
            "unigram_baseline": baseline, "corpus": args.corpus, "steps": state.step,
            "python": sys.version.split()[0],
            "command": "minitransformer train " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["train"] else ""})
        tok.save(export / "tokenizer.json")
        print(f"exported the model (weights only) and its tokenizer to {export}")
    prompt = np.array([tok.encode_ordinary(args.prompt)])
    sample = trainer.model.generate(prompt, 60, temperature=0.8, top_k=40, seed=args.seed, crop=True)
    print(f"sample: {tok.decode(sample[0])!r}")
    return 0


def generate(args: argparse.Namespace) -> int:
    import numpy as np

    from .training import load_model

    model = load_model(args.checkpoint)
    tok = Tokenizer.load(args.tokenizer)
    if tok.vocab_size != model.config.vocab_size:
        raise ValueError(f"tokenizer has {tok.vocab_size} ids but the model {model.config.vocab_size}: "
                         "use the tokenizer.json saved next to the checkpoint")
    ids = np.array([tok.encode(args.prompt, allowed_special="all")])
    out = model.generate(ids, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, crop=True)
    print(tok.decode(out[0]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minitransformer", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="trace a prompt through the five stages with the course model, then generate")
    d.add_argument("--prompt", default=DEMO_PROMPT, help=f"the text to trace (default {DEMO_PROMPT!r})")
    d.add_argument("--train", action="store_true", help="train a fresh tiny model instead of loading the course model")
    d.add_argument("--steps", type=int, default=300, help="training steps with --train (default 300)")
    d.add_argument("--corpus", default=data.DEFAULT_CORPUS, choices=sorted(data.CORPORA))
    d.add_argument("--figures", default="demo_figures", help="folder for the figures (default demo_figures)")
    d.add_argument("--max-new-tokens", type=int, default=60)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--color", default="auto", choices=["auto", "always", "never"])
    d.set_defaults(func=demo)

    tc = sub.add_parser("trace", help="print every step of the pipeline on a text (course model by default)")
    tc.add_argument("text")
    tc.add_argument("--checkpoint", default=None, help="a model saved by `train` (default: the course model)")
    tc.add_argument("--tokenizer", default=None, help="its tokenizer.json (with --checkpoint)")
    tc.add_argument("--figures", default=None, help="also write one figure per step into this folder")
    tc.add_argument("--color", default="never", choices=["always", "never"])
    tc.set_defaults(func=trace_command)

    tr = sub.add_parser("train", help="train a model (and its tokenizer) on the built-in corpus")
    tr.add_argument("--preset", default="tiny", help="model preset: toy, tiny or small (default tiny)")
    tr.add_argument("--corpus", default=data.DEFAULT_CORPUS, choices=sorted(data.CORPORA))
    tr.add_argument("--vocab-size", type=int, default=None, help="override the preset's vocabulary size")
    tr.add_argument("--steps", type=int, default=600)
    tr.add_argument("--batch-size", type=int, default=16)
    tr.add_argument("--lr", type=float, default=3e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--checkpoint-every", type=int, default=0, help="also save every N steps (0: only at the end)")
    tr.add_argument("--out", default="runs/tiny", help="directory for model.npz, model.npz.json, tokenizer.json")
    tr.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    tr.add_argument("--prompt", default="The ", help="prompt for the sample printed at the end")
    tr.add_argument("--export", default=None, help="also write the weights alone and the tokenizer here "
                    "(how data/course is made)")
    tr.add_argument("--stop-at", type=int, default=None, help="stop (and save) at this step; --resume continues")
    tr.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="float64: for checking data parallelism against one process")
    tr.add_argument("--nproc", type=int, default=1, help="data-parallel processes on this machine (runs torchrun)")
    tr.add_argument("--zero1", action="store_true", help="with several processes: shard the optimizer state")
    tr.add_argument("--bucket-mb", type=float, default=25.0, help="all-reduce bucket size in MB (default 25)")
    tr.add_argument("--dist-timeout", type=float, default=60.0,
                    help="seconds a rank waits for the others before it fails (default 60)")
    tr.set_defaults(func=train)

    g = sub.add_parser("generate", help="continue a prompt with a trained model")
    g.add_argument("--checkpoint", default="runs/tiny/model.npz")
    g.add_argument("--tokenizer", default="runs/tiny/tokenizer.json")
    g.add_argument("--prompt", default="The ")
    g.add_argument("--max-new-tokens", type=int, default=100)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=40)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=generate)

    t = sub.add_parser("tokenizer", help="train or use a BPE tokenizer")
    tsub = t.add_subparsers(dest="action", required=True)
    tr = tsub.add_parser("train", help="train a tokenizer and save it as JSON")
    tr.add_argument("--corpus", default=data.DEFAULT_CORPUS, choices=sorted(data.CORPORA))
    tr.add_argument("--file", type=argparse.FileType("r", encoding="utf-8"), help="train on this file instead")
    tr.add_argument("--vocab-size", type=int, required=True)
    tr.add_argument("--pattern", default="gpt4")
    tr.add_argument("--special", action="append", help="add a special token (repeatable)")
    tr.add_argument("--out", required=True, help="where to write the tokenizer JSON")
    tr.add_argument("--vocab-listing", help="also write a readable vocabulary listing here")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=tokenizer_train)
    en = tsub.add_parser("encode", help="encode text with a saved tokenizer")
    en.add_argument("--tokenizer", required=True)
    en.add_argument("--allow-special", action="store_true", help="encode special tokens found in the text")
    en.add_argument("text")
    en.set_defaults(func=tokenizer_encode)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except ValueError as exc:  # bad input: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
