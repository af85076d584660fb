"""The command line. Every command has ``--help``; errors are one ``error:`` line, no traceback.

    minitransformer demo                        # the course model traced through the five stages, then a continuation
    minitransformer demo --train                # the same with a freshly trained tiny model (kept in runs/demo)
    minitransformer trace "some text" --figures figs --html page.html
    minitransformer train --preset tiny --steps 600 --out runs/tiny
    torchrun --standalone --nproc-per-node 2 -m minitransformer train --preset tiny --out runs/tiny2
    minitransformer train --out runs/tiny --resume --steps 1200   # train longer: --steps is the total
    minitransformer generate --checkpoint runs/tiny/model.npz --tokenizer runs/tiny/tokenizer.json
    minitransformer tokenizer train --vocab-size 4096 --out tok.json
    minitransformer tokenizer encode --tokenizer tok.json "some text"

Exit codes: 0 done; 2 the input is wrong (an option, or a file that is missing,
damaged or does not fit: the message says which and how to fix it); 1 the work
failed while running (training diverged, a disk or permission problem, an
unexpected error: ``--debug`` shows its traceback); 130 interrupted by Ctrl-C, 143 by
SIGTERM (``train`` finishes its step, saves a checkpoint and prints the command that
continues it).

The demo prints the pipeline's five stages with their concepts (from
`concepts.py`), then steps through each one on the prompt with the course model
shipped in the package (``minitransformer/data/course``), shows the next-token
distribution, generates a continuation, and writes one figure per step into a folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import io
import sys
from typing import Optional, Sequence

from . import __version__
from .cli_launch import tell_launcher
from .cli_train import (RunFailed, check_demo_folder, count, input_file, output_dir, positive_float, train,
                        train_for_demo)
from .concepts import STAGES
from .tokenizer import Tokenizer
from .training import TrainingInterrupted, data

EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130
DEMO_PROMPT = "The return statement"
COURSE_DIR = "course"  # under data/: the course model and its tokenizer


def _course_files():
    d = data.data_dir() / COURSE_DIR
    return d / "model.npz", d / "tokenizer.json"


def load_course_model():
    """The course model shipped in the package and its tokenizer: ``(model, tokenizer, metadata)``."""
    from .training.checkpoint import load_with_tokenizer

    model_path, tok_path = _course_files()
    if not model_path.exists() or not tok_path.exists():
        raise ValueError(f"the course model is missing ({model_path}); reinstall minitransformer, or run "
                         "`minitransformer demo --train` to train a fresh one")
    return load_with_tokenizer(model_path, tok_path)


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
    import numpy as np

    from .feedforward.output import probabilities

    out = sys.stdout
    color = args.color == "always" or (args.color == "auto" and out.isatty())
    print("minitransformer: five stages, five retrieval concepts\n", file=out)
    for s in STAGES:
        print(f"  {s.number}. {s.name:<22} {s.concept:<15} {s.data_in} -> {s.data_out}", file=out)

    if not args.prompt:
        raise ValueError("--prompt is empty; give at least one character to trace")
    run = check_demo_folder(args.out) if args.train else None  # a folder that holds another run: refused first
    figures = output_dir(args.figures, "--figures")
    html = _html_path(args.html)
    if args.train:
        print(f"\nTraining a fresh tokenizer and `tiny` model on corpus {args.corpus!r} ({args.steps} steps)...", file=out)
        model, tok, meta = train_for_demo(args, run)
    else:
        model, tok, meta = load_course_model()
    extra = meta.get("extra", {})
    print(f"\nmodel: {model}", file=out)
    if "val_loss" in extra:
        print(f"trained on {extra.get('corpus', '?')!r} for {extra.get('steps', '?')} steps: validation loss "
              f"{extra['val_loss']:.3f} nats/token (unigram baseline {extra.get('unigram_baseline', float('nan')):.3f})",
              file=out)

    written = _trace_and_print(model, tok, args.prompt, figures, color, out)

    ids = np.array([_prompt_ids(tok, args.prompt)[-model.config.context_length:]])
    logits = model.forward(ids)[0, -1]
    print("\n== the next-token distribution ==", file=out)
    for temperature in (1.0, 0.5):
        p = probabilities(logits, temperature=temperature)
        top = np.argsort(-p, kind="stable")[:8]
        print(f"  temperature {temperature}: " + ", ".join(f"{tok.decode([int(i)])!r} {p[i]:.1%}" for i in top), file=out)
    sample = model.generate(ids, args.max_new_tokens, temperature=0.8, top_k=40, seed=args.seed, crop=True)
    print(f"\n== a continuation (temperature 0.8, top-k 40, seed {args.seed}) ==\n{tok.decode(sample[0])}", file=out)
    print(f"\n{len(written)} figures written to {figures.resolve()}/", file=out)
    if html:
        _write_page(model, tok, args.prompt, html, out, seed=args.seed)
    return 0


def _html_path(value):
    """``--html``'s file, checked before any work is done (None when not asked for)."""
    if not value:
        return None
    path = Path(value)
    if path.is_dir():
        raise ValueError(f"--html {path} is a folder; give the path of the .html file to write")
    output_dir(path.parent, "--html's folder")
    return path


def _write_page(model, tok, text: str, path, out, **kwargs) -> None:
    """The step-through page of ``text`` as one offline HTML file at ``path`` (see `trace.page`)."""
    from .trace.pipeline import Pipeline

    size = len(Pipeline(tok, model).to_html(text, path, **kwargs).encode("utf-8"))
    print(f"\nthe step-through page ({size / 1024:,.0f} KB, offline, one file): {path.resolve()}\n"
          "open it in a browser; step with the arrow keys", file=out)


def trace_command(args: argparse.Namespace) -> int:
    """Trace text through the pipeline with the course model (or a saved one)."""
    if not args.text:
        raise ValueError("the text to trace is empty; give at least one character")
    if args.checkpoint:
        if not args.tokenizer:
            raise ValueError("--checkpoint needs --tokenizer (the tokenizer.json saved next to it)")
        model, tok = _load_pair(args.checkpoint, args.tokenizer)
    elif args.tokenizer:
        raise ValueError("--tokenizer needs --checkpoint (the model trained with it); without both, the course "
                         "model and its own tokenizer are used")
    else:
        model, tok, _ = load_course_model()
    figures = output_dir(args.figures, "--figures") if args.figures else None
    html = _html_path(args.html)
    written = _trace_and_print(model, tok, args.text, figures, args.color == "always", sys.stdout)
    if written:
        print(f"\n{len(written)} figures written to {figures.resolve()}/")
    if html:
        _write_page(model, tok, args.text, html, sys.stdout)
    return 0


def tokenizer_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the path of the tokenizer's .json file")
    if args.file:
        path = input_file(args.file, "--file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"--file {path} is not UTF-8 text (byte {exc.start}: {exc.reason}); convert it to "
                             "UTF-8 first") from None
    else:
        text = data.load_corpus(args.corpus)
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
    tok = Tokenizer.load(input_file(args.tokenizer, "--tokenizer"))
    if not args.allow_special:
        found = [t for t in tok.special_tokens if t in args.text]
        if found:
            raise ValueError(f"the text contains the special token {found[0]!r}; add --allow-special to encode it as "
                             "that token (its one id)")
    ids = tok.encode(args.text, allowed_special="all" if args.allow_special else ())
    print(" ".join(map(str, ids)))
    return 0


def generate(args: argparse.Namespace) -> int:
    import numpy as np

    model, tok = _load_pair(args.checkpoint, args.tokenizer)
    ids = tok.encode(args.prompt, allowed_special="all")
    start = 0
    if not ids:  # an empty prompt starts from the end-of-text token, as GPT-2 does
        ids, start = _prompt_ids(tok, args.prompt), 1
    out = model.generate(np.array([ids]), args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                         top_p=args.top_p, seed=args.seed, crop=True)
    print(tok.decode(out[0][start:]))
    return 0


def _load_pair(checkpoint, tokenizer):
    """A saved model and its tokenizer, refused if the tokenizer is not the one it was trained with."""
    from .training.checkpoint import load_with_tokenizer

    model, tok, _ = load_with_tokenizer(input_file(checkpoint, "--checkpoint"), input_file(tokenizer, "--tokenizer"))
    return model, tok


def _prompt_ids(tok, prompt: str) -> list:
    """The prompt's ids; an empty prompt becomes the end-of-text token (or a clear error without one)."""
    ids = tok.encode(prompt, allowed_special="all")
    if ids:
        return ids
    eot = tok.special_tokens.get("<|endoftext|>")
    if eot is None:
        raise ValueError("the prompt is empty and the tokenizer has no <|endoftext|> token to start from; give a prompt")
    return [eot]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minitransformer", description=__doc__.split("\n\n")[0],
                                epilog="exit codes: 0 done, 2 wrong input, 1 failed while running, 130 interrupted")
    p.add_argument("--version", action="version", version=f"minitransformer {__version__}")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    common = argparse.ArgumentParser(add_help=False)  # --debug is accepted after the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", parents=[common],
                       help="trace a prompt through the five stages with the course model, then generate")
    d.add_argument("--prompt", default=DEMO_PROMPT, help=f"the text to trace (default {DEMO_PROMPT!r})")
    d.add_argument("--train", action="store_true", help="train a fresh tiny model instead of loading the course model")
    d.add_argument("--steps", type=count(1), default=300, help="training steps with --train (default 300)")
    d.add_argument("--corpus", default=data.DEFAULT_CORPUS, choices=sorted(data.CORPORA))
    d.add_argument("--figures", default="demo_figures", help="folder for the figures (default demo_figures)")
    d.add_argument("--out", default="runs/demo", help="with --train: keep the trained model here (default runs/demo)")
    d.add_argument("--max-new-tokens", type=count(0), default=60)
    d.add_argument("--seed", type=count(0), default=0)
    d.add_argument("--color", default="auto", choices=["auto", "always", "never"])
    d.add_argument("--html", default=None, metavar="PATH",
                   help="also write the step-through page: one offline HTML file (open it in a browser)")
    d.set_defaults(func=demo)

    tc = sub.add_parser("trace", parents=[common],
                        help="print every step of the pipeline on a text (course model by default)")
    tc.add_argument("text")
    tc.add_argument("--checkpoint", default=None, help="a model saved by `train` (default: the course model)")
    tc.add_argument("--tokenizer", default=None, help="its tokenizer.json (with --checkpoint)")
    tc.add_argument("--figures", default=None, help="also write one figure per step into this folder")
    tc.add_argument("--color", default="never", choices=["always", "never"])
    tc.add_argument("--html", default=None, metavar="PATH", help="also write the step-through page (one HTML file)")
    tc.set_defaults(func=trace_command)

    tr = sub.add_parser("train", parents=[common], help="train a model (and its tokenizer) on a built-in corpus",
                        description="Train a model and its tokenizer; --resume continues the run in --out. On "
                        "--resume, --steps (the total to reach), --lr, --eval-every and --checkpoint-every may change; "
                        "--preset, --vocab-size, --corpus, --batch-size and --seed may not.")
    tr.add_argument("--preset", default=None, help="model preset: toy, tiny or small (default tiny)")
    tr.add_argument("--corpus", default=None, choices=sorted(data.CORPORA), help="default pydoc")
    tr.add_argument("--vocab-size", type=count(1), default=None, help="override the preset's vocabulary size")
    tr.add_argument("--steps", type=count(1), default=None, help="total steps to reach (default 600; with --resume: "
                    "more than the checkpoint's step trains longer)")
    tr.add_argument("--batch-size", type=count(1), default=None, help="default 16")
    tr.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default 3e-3)")
    tr.add_argument("--seed", type=count(0), default=None, help="default 0")
    tr.add_argument("--eval-every", type=count(0), default=None,
                    help="evaluate every N steps (default steps/10; 0: only once, at the end)")
    tr.add_argument("--checkpoint-every", type=count(0), default=None, help="also save every N steps (default: only at "
                    "the end, and on Ctrl-C)")
    tr.add_argument("--out", default="runs/tiny", help="the run's folder: model.npz, tokenizer.json, loss.png")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--prompt", default="The ", help="prompt for the sample printed at the end")
    tr.add_argument("--export", default=None, help="also write the weights alone and the tokenizer here "
                    "(how the course model is made)")
    tr.add_argument("--stop-at", type=count(1), default=None, help="stop (and save) at this step; --resume continues")
    tr.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                    help="float64: for checking data parallelism against one process")
    tr.add_argument("--nproc", type=count(1), default=1, help="data-parallel processes on this machine (runs torchrun)")
    tr.add_argument("--zero1", action="store_true", help="with several processes: shard the optimizer state")
    tr.add_argument("--bucket-mb", type=positive_float, default=25.0, help="all-reduce bucket size in MB (default 25)")
    tr.add_argument("--dist-timeout", type=positive_float, default=60.0,
                    help="seconds a rank waits for the others before it fails (default 60; keep it above the "
                         "time rank 0 takes to save a checkpoint, which the others wait for)")
    tr.set_defaults(func=train)

    g = sub.add_parser("generate", parents=[common], help="continue a prompt with a trained model")
    g.add_argument("--checkpoint", default="runs/tiny/model.npz")
    g.add_argument("--tokenizer", default="runs/tiny/tokenizer.json")
    g.add_argument("--prompt", default="The ")
    g.add_argument("--max-new-tokens", type=count(0), default=100)
    g.add_argument("--temperature", type=float, default=0.8)
    g.add_argument("--top-k", type=int, default=40)
    g.add_argument("--top-p", type=float, default=None)
    g.add_argument("--seed", type=count(0), default=0)
    g.set_defaults(func=generate)

    t = sub.add_parser("tokenizer", parents=[common], help="train or use a BPE tokenizer")
    tsub = t.add_subparsers(dest="action", required=True)
    tr = tsub.add_parser("train", parents=[common], help="train a tokenizer and save it as JSON")
    tr.add_argument("--corpus", default=data.DEFAULT_CORPUS, choices=sorted(data.CORPORA))
    tr.add_argument("--file", help="train on this UTF-8 text file instead")
    tr.add_argument("--vocab-size", type=count(1), required=True)
    tr.add_argument("--pattern", default="gpt4")
    tr.add_argument("--special", action="append", help="add a special token (repeatable)")
    tr.add_argument("--out", required=True, help="where to write the tokenizer JSON")
    tr.add_argument("--vocab-listing", help="also write a readable vocabulary listing here")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=tokenizer_train)
    en = tsub.add_parser("encode", parents=[common], help="encode text with a saved tokenizer")
    en.add_argument("--tokenizer", required=True)
    en.add_argument("--allow-special", action="store_true", help="encode special tokens found in the text")
    en.add_argument("text")
    en.set_defaults(func=tokenizer_encode)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run a command; return its exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)  # usage errors: argparse prints them and exits 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a data-parallel `train` relaunches itself
    code = _run(args)
    tell_launcher(code)  # rank 0 of `train --nproc`: the launcher exits with this code
    return code


def _run(args) -> int:
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - every error is one line; --debug shows the traceback
        if args.debug:
            raise
        return _report(exc)
    except KeyboardInterrupt as exc:
        if args.debug:
            raise
        saved = f"; saved {exc.checkpoint}" if isinstance(exc, TrainingInterrupted) and exc.checkpoint else \
            "; nothing was saved"
        print(f"\ninterrupted{saved}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_INTERRUPTED)  # a plain KeyboardInterrupt: Ctrl-C


def _report(exc: Exception) -> int:
    if isinstance(exc, ValueError):  # bad input: the message names it and the fix
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(exc, RunFailed):
        print(f"error: {exc}", file=sys.stderr)
    elif isinstance(exc, OSError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        print(f"error: cannot access{where}: {exc.strerror or exc}", file=sys.stderr)
    else:
        print(f"error: unexpected {type(exc).__name__}: {exc} (run again with --debug for the traceback)",
              file=sys.stderr)
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
