"""The command line: ``minitransformer demo`` and the tokenizer commands.

    minitransformer demo                      # run the pipeline's built stages on the built-in corpus
    minitransformer tokenizer train --vocab-size 4096 --out tok.json
    minitransformer tokenizer encode --tokenizer tok.json "some text"

The demo shows the pipeline's five stages with their concepts (from
`concepts.py`) and steps through each stage that exists. Today that is stage 1,
tokenization: train on the built-in corpus, show the first merges, encode a
sentence step by step, colour its token boundaries, and measure compression on
held-out text.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from typing import Optional, Sequence

from . import data
from .concepts import STAGES
from .tokenizer import PATTERNS, Tokenizer
from .tokenizer.files import render_token
from .tokenizer.show import compression, show_work, token_spans

BUILT_STAGES = {"tokenization"}  # stages the demo can run today
DEMO_SENTENCE = "The tokenizer doesn't see letters: it sees 1234567 bytes, merged into tokens."


def demo(args: argparse.Namespace) -> int:
    out = sys.stdout
    color = args.color == "always" or (args.color == "auto" and out.isatty())
    print("minitransformer: five stages, five retrieval concepts\n", file=out)
    for s in STAGES:
        status = "runs below" if s.key in BUILT_STAGES else "coming next"
        print(f"  {s.number}. {s.name:<22} {s.concept:<15} {s.data_in} -> {s.data_out}   [{status}]", file=out)

    s = STAGES[0]
    print(f"\n== Stage {s.number}: {s.name} (concept: {s.concept}) ==", file=out)
    print(f"{s.question}\n{s.summary}\n", file=out)

    text = data.load_corpus(args.corpus)
    train_text, held_out = data.split_text(text)
    t0 = time.perf_counter()
    tok = Tokenizer.train(train_text, args.vocab_size, pattern=args.pattern, special_tokens=["<|endoftext|>"])
    seconds = time.perf_counter() - t0
    print(
        f"Trained byte-level BPE on corpus {args.corpus!r} ({len(train_text.encode()):,} bytes, "
        f"pattern {args.pattern!r}) in {seconds:.2f} s: {tok.train_result}.",
        file=out,
    )
    print("The first merges (the most frequent neighbours in the corpus):", file=out)
    for r, (a, b) in enumerate(tok.merges[:10]):
        left, right, new = (render_token(tok.vocab[i]) for i in (a, b, 256 + r))
        print(f"  {256 + r}: [{left}] + [{right}] -> [{new}]   seen {tok.train_result.counts[r]:,} times", file=out)

    sentence = args.text or DEMO_SENTENCE
    work = show_work(tok, sentence)
    print(f"\nEncoding {sentence!r} step by step:", file=out)
    print(work.describe(tok, max_steps=12), file=out)
    spans = token_spans(tok, sentence)
    print("\nToken boundaries:", spans.ansi() if color else str(spans), file=out)
    print(f"ids: {work.ids}", file=out)
    assert tok.decode(work.ids) == sentence  # the round trip is lossless

    stats = compression(tok, held_out)
    print(
        f"\nOn held-out text ({stats['bytes']:,} bytes, never seen in training): {stats['tokens']:,} tokens, "
        f"{stats['bytes_per_token']:.2f} bytes per token.",
        file=out,
    )
    try:
        tok.encode("user text with <|endoftext|> inside")
    except ValueError as exc:
        print(f"Special tokens are guarded: {exc}", file=out)
    print("\nNext: stages 2-5 turn these ids into vectors, positions, retrieval and predictions.", file=out)
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
    """Train a model on the built-in corpus with a stage-1 tokenizer; save both under ``--out``."""
    from pathlib import Path

    import numpy as np

    from .config import ModelConfig
    from .model import GPT
    from .train import TrainConfig, Trainer, resume, unigram_loss

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = {} if args.vocab_size is None else {"vocab_size": args.vocab_size}
    config = ModelConfig.preset(args.preset, **overrides)
    text = data.load_corpus(args.corpus)
    train_text, val_text = data.split_text(text)
    tok_path, ckpt = out / "tokenizer.json", out / "model.npz"
    if args.resume and tok_path.exists():
        tok = Tokenizer.load(tok_path)
    else:  # the tokenizer's vocabulary (merges + one special token) is the model's
        tok = Tokenizer.train(train_text, config.vocab_size - 1, special_tokens=["<|endoftext|>"])
        tok.save(tok_path)
    train_ids = np.array(tok.encode_ordinary(train_text), dtype=np.int64)
    val_ids = np.array(tok.encode_ordinary(val_text), dtype=np.int64)
    baseline = unigram_loss(train_ids, val_ids, config.vocab_size)
    print(f"corpus {args.corpus!r}: {len(train_ids):,} training tokens, {len(val_ids):,} validation tokens "
          f"(vocab {tok.vocab_size}); unigram baseline {baseline:.3f} nats/token")
    if args.resume and ckpt.exists():
        trainer = resume(ckpt, train_ids, val_ids)
        print(f"resumed at step {trainer.state.step}")
    else:
        tc = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                         eval_every=max(1, args.steps // 10), checkpoint_every=args.checkpoint_every)
        trainer = Trainer(GPT(config, seed=args.seed), train_ids, val_ids, tc)
        print(trainer.model)
    state = trainer.run(checkpoint_path=ckpt)
    final = state.evals[-1][1] if state.evals else trainer.evaluate()
    print(f"validation loss {final:.3f} nats/token vs unigram baseline {baseline:.3f}; saved {ckpt} and {tok_path}")
    from .fileio import atomic_write
    from .viz import loss_curves

    fig = loss_curves(state.losses, state.evals, baseline, title=f"{args.preset} on {args.corpus!r}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    atomic_write(out / "loss.png", buf.getvalue())
    prompt = np.array([tok.encode_ordinary(args.prompt)])
    sample = trainer.model.generate(prompt, 60, temperature=0.8, top_k=40, seed=args.seed, crop=True)
    print(f"sample: {tok.decode(sample[0])!r}")
    return 0


def generate(args: argparse.Namespace) -> int:
    import numpy as np

    from .train import load_model

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

    d = sub.add_parser("demo", help="step through the pipeline on the built-in corpus")
    d.add_argument("--corpus", default=data.DEFAULT_CORPUS, choices=sorted(data.CORPORA))
    d.add_argument("--vocab-size", type=int, default=1024, help="BPE vocabulary size (default 1024)")
    d.add_argument("--pattern", default="gpt4", help=f"split pattern: {', '.join(PATTERNS)} or a regex")
    d.add_argument("--text", default=None, help="the sentence to step through")
    d.add_argument("--color", default="auto", choices=["auto", "always", "never"])
    d.set_defaults(func=demo)

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
    try:
        return args.func(args)
    except ValueError as exc:  # bad input: one clear line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
