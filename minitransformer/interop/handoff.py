"""Hand a model over to PyTorch for data-parallel fine-tuning, and take the result back to numpy.

The numpy model is for reading and tracing; when training needs GPUs the weights
go to ``transformers`` in a format it knows (Llama or GPT-2, see `interop.llama`
and `interop.gpt2`), are fine-tuned there with DistributedDataParallel under
torchrun, and come back as a numpy `GPT` to be traced like any other:

    python -m minitransformer.interop.handoff export --checkpoint runs/tiny/model.npz --format gpt2 --out tiny-hf \
        --tokenizer runs/tiny/tokenizer.json
    torchrun --standalone --nproc-per-node 2 -m minitransformer.interop.handoff finetune tiny-hf \\
        --out tiny-ft --tokenizer runs/tiny/tokenizer.json --steps 20
    python -m minitransformer.interop.handoff back tiny-ft --save tiny-ft-numpy

``finetune`` uses the NCCL backend and one GPU per process when CUDA is there, and
gloo on the CPU otherwise (how the tests run it): the same command either way.
Every rank draws the same global batch (seeded) and trains on its slice; DDP
averages the gradients, so N processes compute what one does on the whole batch.
Rank 0 writes the result with ``save_pretrained``; ``back`` loads it into numpy
(`load_llama` / `load_gpt2` by ``model_type``), checks its logits against
``transformers``' and can save it as a checkpoint for ``minitransformer trace``.

torch and transformers are needed for ``finetune`` (and for the check in ``back``),
never by the rest of the package.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np

from ..model import GPT
from . import hf_checkpoint
from .gpt2 import export_gpt2, load_gpt2
from .llama import export_llama, load_llama

FORMATS = {"llama": (export_llama, load_llama), "gpt2": (export_gpt2, load_gpt2)}


def export(model: GPT, fmt: str, out, eos_token_id: Optional[int] = None, tokenizer=None) -> Path:
    """Write ``model`` (and ``tokenizer``, if given) as a ``transformers`` checkpoint directory in format
    ``fmt`` ("llama" or "gpt2"), as one unit (`hf_checkpoint.write_dir`)."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not known; choose one of {sorted(FORMATS)}")
    return FORMATS[fmt][0](model, out, eos_token_id=eos_token_id, tokenizer=tokenizer)


def export_checkpoint(checkpoint, fmt: str, out, tokenizer=None) -> Path:
    """A ``model.npz`` written as a ``transformers`` folder; with ``tokenizer`` (its tokenizer.json), that too.

    The tokenizer is checked against the one the checkpoint records, written (in the same
    atomic unit as the weights) as the ``tokenizer.json`` that ``PreTrainedTokenizerFast(tokenizer_file=...)``
    reads, and its ``<|endoftext|>`` id becomes the config's ``eos_token_id`` so that ``generate`` stops there.
    """
    from ..training.checkpoint import load_with_tokenizer

    model, tok, _ = load_with_tokenizer(checkpoint, tokenizer)
    eos = None if tok is None else tok.special_tokens.get("<|endoftext|>")
    return export(model, fmt, out, eos_token_id=eos, tokenizer=tok)


def load_back(path) -> GPT:
    """The numpy `GPT` of a checkpoint directory written by ``save_pretrained`` (Llama or GPT-2)."""
    config_path = Path(path) / "config.json"
    if not config_path.exists():
        raise ValueError(f"no config.json in {path}: pass the folder save_pretrained wrote")
    model_type = hf_checkpoint.read_config(config_path).get("model_type")
    if not isinstance(model_type, str) or model_type not in FORMATS:
        raise ValueError(f"{config_path} has model_type {model_type!r}; numpy loads {sorted(FORMATS)}")
    return FORMATS[model_type][1](path)


def token_stream(tokenizer: Optional[str], corpus: str) -> np.ndarray:
    """Token ids of ``corpus``: with our tokenizer (``tokenizer.json``), else its UTF-8 bytes (ids 0..255)."""
    from ..training.data import load_corpus

    text = load_corpus(corpus)
    if tokenizer:
        from ..tokenizer import Tokenizer

        return np.array(Tokenizer.load(tokenizer).encode_ordinary(text), np.int64)
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int64)


def global_batch(tokens: np.ndarray, batch_size: int, context: int, seed: int, step: int) -> np.ndarray:
    """Windows (B, T) of the global batch of ``step``: the same on every rank."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(tokens) - context, size=batch_size)
    return tokens[starts[:, None] + np.arange(context)]  # (B, T)


def finetune(model_dir, out, steps: int = 20, batch_size: int = 8, lr: float = 1e-3, seed: int = 0,
             tokenizer: Optional[str] = None, corpus: str = "tiny", context: Optional[int] = None,
             device: str = "auto", log=print) -> list[float]:
    """Fine-tune the checkpoint in ``model_dir`` with transformers, one process or one DDP rank; returns the losses.

    Under torchrun (``WORLD_SIZE`` > 1) the process group is joined here (NCCL on GPUs,
    gloo on the CPU) and the model wrapped in DistributedDataParallel; rank 0 writes
    ``out`` with ``save_pretrained``.
    """
    import torch
    import torch.distributed as dist
    from transformers import AutoModelForCausalLM

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if batch_size % world:
        raise ValueError(f"batch_size={batch_size} does not split over {world} processes; use a multiple of {world}")
    dev = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).to(dev)
    T = context or min(64, model.config.max_position_embeddings)
    tokens = token_stream(tokenizer, corpus)
    if tokens.max() >= model.config.vocab_size:
        raise ValueError(f"token ids reach {tokens.max()} but the model has {model.config.vocab_size}; "
                         "pass the tokenizer.json the model was trained with (--tokenizer)")
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    b, losses = batch_size // world, []
    model.train()
    for step in range(steps):
        ids = global_batch(tokens, batch_size, T, seed, step)[rank * b:(rank + 1) * b]  # (b, T): my rows
        x = torch.from_numpy(ids).to(dev)
        loss = ddp(input_ids=x, labels=x).loss  # the model shifts the labels by one itself
        opt.zero_grad(set_to_none=True)
        loss.backward()  # DDP all-reduces (averages) the gradients in buckets during this call
        opt.step()
        mean = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean)
            mean /= world
        losses.append(float(mean))
        if rank == 0 and log:
            log(f"step {step + 1}/{steps}  loss {losses[-1]:.4f}  ({world} process{'es' if world > 1 else ''}, {dev})")
    if rank == 0:
        model.save_pretrained(out)
    if world > 1:
        dist.barrier()  # the others wait until the checkpoint is written
        dist.destroy_process_group()
    return losses


def check_against_transformers(path, ids: np.ndarray) -> float:
    """Max |logits difference| between the numpy model loaded from ``path`` and transformers' on ``ids``."""
    import torch
    from transformers import AutoModelForCausalLM

    ours = load_back(path).forward(ids)  # (B, T, V)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(ids)).logits.numpy()
    return float(np.abs(ours - theirs).max())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m minitransformer.interop.handoff",
                                description="export to transformers, fine-tune with DDP under torchrun, load back")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="write a numpy checkpoint as a transformers checkpoint directory")
    e.add_argument("--checkpoint", required=True, help="a model.npz written by `minitransformer train`")
    e.add_argument("--format", default="gpt2", choices=sorted(FORMATS))
    e.add_argument("--out", required=True)
    e.add_argument("--tokenizer", default=None, help="its tokenizer.json: also written, as transformers reads it, "
                   "and its <|endoftext|> id becomes eos_token_id")
    f = sub.add_parser("finetune", help="fine-tune with transformers (run under torchrun for several processes)")
    f.add_argument("model_dir")
    f.add_argument("--out", required=True)
    f.add_argument("--steps", type=int, default=20)
    f.add_argument("--batch-size", type=int, default=8, help="global batch, split over the processes")
    f.add_argument("--lr", type=float, default=1e-3)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--context", type=int, default=None, help="window length (default: up to 64)")
    f.add_argument("--tokenizer", default=None, help="our tokenizer.json (default: UTF-8 bytes as ids)")
    f.add_argument("--corpus", default="tiny")
    f.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    b = sub.add_parser("back", help="load a save_pretrained folder into numpy and check it against transformers")
    b.add_argument("model_dir")
    b.add_argument("--save", default=None, help="also save it as a numpy checkpoint (for `minitransformer trace`)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "export":
            path = export_checkpoint(args.checkpoint, args.format, args.out, args.tokenizer)
            print(f"wrote {path}" + (" (with its tokenizer.json)" if args.tokenizer else ""))
        elif args.command == "finetune":
            finetune(args.model_dir, args.out, args.steps, args.batch_size, args.lr, args.seed, args.tokenizer,
                     args.corpus, args.context, args.device)
            if int(os.environ.get("RANK", "0")) == 0:
                print(f"saved {args.out} (load it into numpy with: python -m minitransformer.interop.handoff "
                      f"back {args.out})")
        else:
            model = load_back(args.model_dir)
            print(f"numpy: {model}")
            ids = np.arange(min(8, model.config.context_length))[None] % model.config.vocab_size  # (1, T)
            try:
                print(f"max |logits numpy - transformers| = {check_against_transformers(args.model_dir, ids):.2e}")
            except ImportError:
                print("(transformers is not installed: logits not compared)")
            if args.save:
                from ..training import save_model

                Path(args.save).mkdir(parents=True, exist_ok=True)
                save_model(Path(args.save) / "model.npz", model)
                print(f"saved {Path(args.save) / 'model.npz'} (trace it: minitransformer trace TEXT --checkpoint "
                      f"{Path(args.save) / 'model.npz'} --tokenizer <its tokenizer.json>)")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
