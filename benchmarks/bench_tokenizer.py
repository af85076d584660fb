"""Benchmark the BPE tokenizer: training speed, encoding throughput, parity with peers.

All on the built-in ``pydoc`` corpus (~465 KB); MB = 10**6 bytes of UTF-8 text.

1. Training. a: ``train_fast`` against ``train_reference`` at vocab 1024 on the
   whole corpus (ratio reference / fast, target >= 100x; the merge lists must be
   identical; the reference takes about a minute per run, ``--ref-repeats``).
   b: ``train_fast`` to vocab 4096 on the whole corpus (target < 1.5 s).
2. Encoding with a tokenizer trained to vocab 4096 on the training split, for
   both encoders (``impl="reference"``: one chunk at a time in Python;
   ``impl="fast"``, the default: all new chunks of a call merged together in
   numpy, the built-in split run by ``re``) and for tiktoken given our ranks
   and pattern, interleaved in the same run.
   a. never seen (the figure that counts): a fresh copy of the tokenizer,
      warmed only by encoding its training text (untimed), encodes once a
      document from outside that corpus (numpy's docstrings and the
      multilingual text, ~1.2 MB). Targets: fast >= 7 MB/s and >= 0.33x
      tiktoken; fast, reference and tiktoken ids identical.
   b. cold start: a fresh ``Tokenizer`` (empty memo) encodes the held-out split
      (~46 KB) for the first time. Target: fast >= 4 MB/s.
   c. repeated text: the held-out split repeated to about ``--encode-mb`` MB,
      after one encode of it (every chunk a memo hit). Target: >= 5 MB/s.
3. HF tokenizers, if installed: a BPE trained to vocab 4096 on the same text
   (same GPT-4 split, then byte-level); only training time is compared (its
   tie rules differ, so its merges are not expected to match).

The header names the BLAS kernel (threadpoolctl) and warns if
``OPENBLAS_CORETYPE`` is set. Every figure is the median (and min) of
``--repeats`` runs (default 5; wall clock, or with ``--timer cpu`` this process's
CPU time, steadier on a shared machine); targets are judged on the
median. Progress goes to stderr, the report to stdout. The exit code is 1 only
if a correctness check fails (the trainers' merges, or the encoders' ids,
differ), never for a missed target.

Run from the repository root (peers: ``pip install -e ".[bench]"``)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_tokenizer.py  # ~90 s
    python benchmarks/bench_tokenizer.py --ref-repeats 0  # skip the slow reference trainer
    python benchmarks/bench_tokenizer.py --repeats 9 --json results.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

try:
    from minitransformer.training.data import load_corpus, split_text
except ImportError:  # not installed: use the repository this script lives in
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from minitransformer.training.data import load_corpus, split_text

import numpy as np

from minitransformer.core.fileio import atomic_write
from minitransformer.tokenizer import Tokenizer, train_fast, train_reference

PEER_HINT = "pip install -e '.[bench]'"

# Targets: (key in results, description, comparison, threshold)
TARGET_REF_RATIO = 100.0  # reference / fast training time at vocab 1024, at least
TARGET_TRAIN_4096_S = 1.5  # fast training to vocab 4096 on the whole corpus, seconds, under
TARGET_WARM_MBPS = 5.0  # repeated-text (memo hits) encoding throughput, MB/s, at least
TARGET_NEVER_SEEN_MBPS = 7.0  # fast encoding of never-seen text, MB/s, at least
TARGET_NEVER_SEEN_RATIO = 0.33  # ... and as a fraction of tiktoken's throughput, at least
TARGET_COLD_MBPS = 4.0  # fast encoding with an empty memo, MB/s, at least


CLOCK = [time.perf_counter]  # what `measure` reads; --timer cpu puts time.process_time here


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def measure(fn, repeats: int, setup=None):
    """Time ``fn(arg)`` ``repeats`` times; return (list of seconds, last result).

    ``setup`` (untimed) is called before each run and its value passed to ``fn``.
    A garbage collection is forced before each run so one run's garbage is not
    billed to the next; the collector stays enabled while timing (as in real use).
    """
    times, result = [], None
    for _ in range(repeats):
        arg = setup() if setup is not None else None
        gc.collect()
        t0 = CLOCK[0]()
        result = fn(arg)
        times.append(CLOCK[0]() - t0)
    return times, result


def stats(times: list[float], per: float = 1.0) -> dict:
    """Median and min of ``times`` (each divided by ``per``), plus the raw runs."""
    return {"median_s": statistics.median(times) / per, "min_s": min(times) / per, "runs_s": [t / per for t in times]}


def machine_info() -> dict:
    info = {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "numpy": np.__version__, "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor() or "unknown", "cpu_count": os.cpu_count()}
    for name in ("regex", "tiktoken", "tokenizers"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [f"{p.get('internal_api')} {p.get('version')}, kernel {p.get('architecture', '?')}, "
                        f"{p.get('num_threads')} threads" for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        info["blas"] = ["unknown (pip install threadpoolctl)"]
    info["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE")
    return info


# ---------------------------------------------------------------------------------- sections
def bench_training(text: str, repeats: int, ref_repeats: int) -> dict:
    out: dict = {}
    log(f"[1a] train_fast, vocab 1024, whole corpus x{repeats}")
    fast_times, fast_res = measure(lambda _: train_fast(text, 1024), repeats)
    out["fast_1024"] = stats(fast_times) | {"merges": len(fast_res.merges)}

    if ref_repeats > 0:
        log(f"[1a] train_reference, vocab 1024, whole corpus x{ref_repeats} (slow: about a minute per run)")
        ref_times, ref_res = measure(lambda _: train_reference(text, 1024), ref_repeats)
        out["reference_1024"] = stats(ref_times) | {"merges": len(ref_res.merges)}
        out["ref_over_fast"] = statistics.median(ref_times) / statistics.median(fast_times)
        out["merges_identical"] = ref_res.merges == fast_res.merges
        if not out["merges_identical"]:
            pairs = zip(ref_res.merges, fast_res.merges)
            out["first_merge_difference"] = next((i for i, (a, b) in enumerate(pairs) if a != b),
                                                 min(len(ref_res.merges), len(fast_res.merges)))
    else:
        log("[1a] reference trainer skipped (--ref-repeats 0)")
        out.update(reference_1024=None, ref_over_fast=None, merges_identical=None)

    log(f"[1b] train_fast, vocab 4096, whole corpus x{repeats}")
    t4096, res4096 = measure(lambda _: train_fast(text, 4096), repeats)
    out["fast_4096"] = stats(t4096) | {"merges": len(res4096.merges), "reason": res4096.reason}
    return out


def never_seen_text() -> str:
    """A document from outside the pydoc corpus: numpy's docstrings, then the multilingual text."""
    import inspect
    import warnings

    docs, seen = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated numpy names warn when touched
        for module in (np, np.linalg, np.fft, np.random):
            for name in sorted(n for n in dir(module) if not n.startswith("_")):
                obj = getattr(module, name, None)
                doc = None if isinstance(obj, (int, float, str)) else inspect.getdoc(obj)
                if doc and id(obj) not in seen:
                    seen.add(id(obj))
                    docs.append(doc)
    return "\n\n".join(docs) + "\n\n" + load_corpus("multilingual")


def tiktoken_encoding(tok: Tokenizer):
    """tiktoken given our ranks and pattern, or a string saying why there is none."""
    try:
        import tiktoken
    except ImportError:
        return f"tiktoken not installed ({PEER_HINT})"
    tokens = tok.vocab[: 256 + len(tok.merges)]
    ranks = {b: rank for rank, b in enumerate(tokens)}
    if len(ranks) != len(tokens):
        return "two tokens have the same bytes; tiktoken ranks need unique tokens"
    try:
        return tiktoken.Encoding(name="minitransformer", pat_str=tok.pattern, mergeable_ranks=ranks, special_tokens={})
    except Exception as exc:  # e.g. a pattern its regex engine rejects
        return f"cannot build tiktoken.Encoding: {exc}"


def throughput(times: list[float], n_bytes: int, per: float = 1.0) -> dict:
    s = stats(times, per)
    return s | {"mbps_median": n_bytes / s["median_s"] / 1e6, "mbps_best": n_bytes / s["min_s"] / 1e6}


def bench_encoding(train_text: str, held_out: str, repeats: int, encode_mb: float) -> dict:
    """Train on the training split; time never-seen, cold and repeated-text encoding for both encoders and tiktoken."""
    out: dict = {}
    log(f"[2] train_fast, vocab 4096, training split x{repeats} (also the baseline for HF)")
    t_train, res = measure(lambda _: train_fast(train_text, 4096), repeats)
    out["fast_4096_train_split"] = stats(t_train) | {"merges": len(res.merges)}
    tok = Tokenizer(res.merges, "gpt4")
    enc = tiktoken_encoding(tok)
    out["tiktoken"] = enc if isinstance(enc, str) else f"tiktoken {__import__('tiktoken').__version__}"
    impls = ("reference", "fast") + (() if isinstance(enc, str) else ("tiktoken",))
    t0 = time.perf_counter()
    Tokenizer().encode("x", impl="fast")  # build the process-wide tables of the re split once
    out["fast_first_call_s"] = time.perf_counter() - t0

    def runner(impl: str, warm_on: str):
        """Encoding with ``impl``: tiktoken, or a fresh copy of ``tok`` that has encoded ``warm_on`` (untimed)."""
        if impl == "tiktoken":
            return enc.encode_ordinary
        fresh = Tokenizer(tok.merges, tok.pattern)
        fresh.encode_ordinary(warm_on, impl=impl)
        return lambda text: fresh.encode_ordinary(text, impl=impl)

    # a. Never seen: a fresh copy warmed on its training text encodes a document from elsewhere, once.
    doc = never_seen_text()
    doc_bytes = len(doc.encode("utf-8"))
    out["never_seen_bytes"] = doc_bytes
    log(f"[2a] never seen: {doc_bytes / 1e6:.2f} MB, {', '.join(impls)} interleaved x{repeats}")
    times: dict = {i: [] for i in impls}
    ids: dict = {}
    for _ in range(repeats):
        for impl in impls:
            run = runner(impl, warm_on=train_text)  # warmed on its training corpus only
            t, ids[impl] = measure(lambda _: run(doc), 1)
            times[impl] += t
    out["never_seen"] = {i: throughput(times[i], doc_bytes) for i in impls}
    out["never_seen_tokens"] = len(ids["fast"])
    out["fast_equals_reference"] = ids["fast"] == ids["reference"]
    out["fast_equals_tiktoken"] = ids["fast"] == ids["tiktoken"] if "tiktoken" in ids else None

    # b. Cold start: fresh tokenizers (built untimed), each encoding the held-out text for the first time.
    ho_bytes = len(held_out.encode("utf-8"))
    copies = max(1, round(encode_mb * 1e6 / ho_bytes))
    cold_inner = max(1, min(copies, 10))
    out.update(held_out_bytes=ho_bytes, copies=copies, encoded_bytes=ho_bytes * copies, cold_calls_per_run=cold_inner)
    log(f"[2b] cold start: {ho_bytes / 1e3:.0f} KB, {cold_inner} fresh tokenizers per run x{repeats}")
    out["cold"] = {}
    for impl in impls[:2]:
        t, _ = measure(lambda fresh, i=impl: [f.encode_ordinary(held_out, impl=i) for f in fresh], repeats,
                       setup=lambda: [Tokenizer(tok.merges, tok.pattern) for _ in range(cold_inner)])
        out["cold"][impl] = throughput(t, ho_bytes, per=cold_inner)

    # c. Repeated text: one encode of the held-out text fills the memo, then every chunk is a lookup.
    big = held_out * copies
    log(f"[2c] repeated text: {ho_bytes * copies / 1e6:.2f} MB (held-out x{copies}) x{repeats}")
    out["repeated"] = {}
    first = runner("fast", "")(held_out)
    for impl in impls:
        run = runner(impl, warm_on=held_out)
        t, ids_big = measure(lambda _: run(big), repeats)
        assert ids_big == first * copies, f"{impl}: encoding the repeated text is not the repeated encoding"
        out["repeated"][impl] = throughput(t, ho_bytes * copies)
    out["bytes_per_token"] = ho_bytes / len(first)
    return out


def bench_hf(train_text: str, pattern: str, ours_train_s: float, repeats: int) -> dict:
    try:
        import tokenizers
        from tokenizers import Regex, models, pre_tokenizers, trainers
    except ImportError:
        log(f"[3] HF tokenizers not installed ({PEER_HINT})")
        return {"installed": False}
    out: dict = {"installed": True, "version": tokenizers.__version__}

    def setup():
        hf = tokenizers.Tokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),  # the same GPT-4 chunks
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),  # bytes as symbols
        ])
        trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=0, show_progress=False, special_tokens=[],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes, like ours
        return hf, trainer

    def run(arg):
        hf, trainer = arg
        hf.train_from_iterator([train_text], trainer=trainer)
        return hf

    log(f"[3] HF tokenizers BpeTrainer, vocab 4096, training split x{repeats}")
    try:
        t, hf = measure(run, repeats, setup=setup)
    except Exception as exc:
        out["error"] = f"HF training failed: {exc}"
        return out
    out["train"] = stats(t)
    out["vocab_size"] = hf.get_vocab_size()
    out["hf_over_ours"] = out["train"]["median_s"] / ours_train_s
    out["threads_note"] = f"HF trains with a thread pool (up to {os.cpu_count()} cpus here); ours is single-threaded"
    return out


# ---------------------------------------------------------------------------------- report
def verdict(ok) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def render(report: dict) -> str:
    m, tr, en, hf = (report[k] for k in ("machine", "training", "encoding", "huggingface"))
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name, median="", best="", target="", result=""):
        rows.append((name, median, best, target, result))

    def secs(s):
        return f"{s['median_s']:.3f} s", f"{s['min_s']:.3f} s"

    t = report["targets"]
    row("1a fast train, vocab 1024, whole corpus", *secs(tr["fast_1024"]))
    if tr["reference_1024"] is not None:
        n = len(tr["reference_1024"]["runs_s"])
        row(f"1a reference train, vocab 1024 ({n} run{'s' * (n > 1)})", *secs(tr["reference_1024"]))
        row("1a ratio reference / fast (medians)", f"{tr['ref_over_fast']:.0f}x", "", f">= {TARGET_REF_RATIO:.0f}x",
            verdict(t["ref_over_fast"]["pass"]))
        row(f"1a merges identical ({tr['fast_1024']['merges']} merges)", "yes" if tr["merges_identical"] else "NO", "", "must be yes",
            "OK" if tr["merges_identical"] else "ERROR")
    else:
        row("1a reference train (skipped: --ref-repeats 0)", "", "", f">= {TARGET_REF_RATIO:.0f}x", "n/a")
    row("1b fast train, vocab 4096, whole corpus", *secs(tr["fast_4096"]), f"< {TARGET_TRAIN_4096_S} s",
        verdict(t["fast_train_4096"]["pass"]))
    row("2  fast train, vocab 4096, training split", *secs(en["fast_4096_train_split"]))
    mbps = lambda f: (f"{f['mbps_median']:.2f} MB/s", f"{f['mbps_best']:.2f} MB/s")  # noqa: E731
    ns, tk = en["never_seen"], en["never_seen"].get("tiktoken")
    row(f"2a never seen, {en['never_seen_bytes'] / 1e6:.2f} MB: reference", *mbps(ns["reference"]))
    row("2a never seen: fast", *mbps(ns["fast"]), f">= {TARGET_NEVER_SEEN_MBPS} MB/s", verdict(t["never_seen_mbps"]["pass"]))
    if tk is None:
        row(f"2a never seen: {en['tiktoken']}")
    else:
        row("2a never seen: tiktoken, same ranks", *mbps(tk))
        row("2a never seen: fast / tiktoken (medians)", f"{t['never_seen_vs_tiktoken']['value']:.2f}x", "",
            f">= {TARGET_NEVER_SEEN_RATIO}x", verdict(t["never_seen_vs_tiktoken"]["pass"]))
    same = [en["fast_equals_reference"], en["fast_equals_tiktoken"]]
    row("2a ids: fast == reference, fast == tiktoken", " / ".join({True: "yes", False: "NO", None: "n/a"}[x] for x in same),
        "", "must be yes", "ERROR" if False in same else "OK")
    row(f"2b cold start, {en['held_out_bytes'] / 1e3:.1f} KB, fresh Tokenizer: reference", *mbps(en["cold"]["reference"]))
    row("2b cold start: fast", *mbps(en["cold"]["fast"]), f">= {TARGET_COLD_MBPS} MB/s", verdict(t["cold_mbps"]["pass"]))
    for impl, f in en["repeated"].items():
        name = "2c repeated text" + (f", {en['encoded_bytes'] / 1e6:.2f} MB (held-out x{en['copies']})"
                                     if impl == "reference" else "")
        target = (f">= {TARGET_WARM_MBPS} MB/s", verdict(t["repeated_mbps"]["pass"])) if impl == "fast" else ("", "")
        row(f"{name}: {impl}", *mbps(f), *target)
    row("2  held-out compression", f"{en['bytes_per_token']:.2f} B/tok")
    row("2  first fast encode in a process (builds the re classes)", f"{en['fast_first_call_s'] * 1e3:.0f} ms")
    if not hf["installed"]:
        row(f"3  HF tokenizers not installed ({PEER_HINT})")
    elif "error" in hf:
        row(f"3  HF tokenizers: {hf['error']}")
    else:
        row(f"3  HF BPE train, vocab {hf['vocab_size']}, training split", *secs(hf["train"]))
        row("3  HF time / ours (medians; time only)", f"{hf['hf_over_ours']:.2f}x")

    header = ("measurement", "median", "min/best", "target", "result")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(5)]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    line = "-" * len(fmt(header))
    lines = [
        "minitransformer tokenizer benchmark",
        f"python {m['python']} ({m['implementation']}), numpy {m['numpy']}, regex {m.get('regex', '?')}, "
        f"tiktoken {m['tiktoken'] or 'not installed'}, tokenizers {m['tokenizers'] or 'not installed'}",
        f"platform {m['platform']}, {m['machine']}, cpu count {m['cpu_count']}",
        f"BLAS: {'; '.join(m['blas']) or 'none found'}",
        *([f"WARNING: OPENBLAS_CORETYPE={m['openblas_coretype']} is set and forces the BLAS kernel; "
           "run with env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"] if m["openblas_coretype"] else []),
        f"corpus {report['settings']['corpus']!r}: {report['corpus']['chars']} chars, "
        f"{report['corpus']['bytes']} bytes; train split {report['corpus']['train_bytes']} B, "
        f"held-out {report['corpus']['held_out_bytes']} B",
        f"repeats {report['settings']['repeats']} (reference: {report['settings']['ref_repeats']}); "
        f"timer {report['settings']['timer']}; median and min of runs, targets judged on the median; MB = 10^6 bytes",
        line,
        fmt(header),
        line,
        *[fmt(r) for r in rows],
        line,
    ]
    if hf.get("installed") and "error" not in hf:
        lines.append(f"note: {hf['threads_note']}; HF merges differ by design (own tie rules), so only time is compared.")
    passed = [k for k, v in t.items() if v["pass"] is True]
    failed = [k for k, v in t.items() if v["pass"] is False]
    skipped = [k for k, v in t.items() if v["pass"] is None]
    summary = f"targets: {len(passed)} PASS, {len(failed)} FAIL" + (f", {len(skipped)} not measured" if skipped else "")
    if failed:
        summary += "  <-- FAILED: " + ", ".join(failed)
    lines.append(summary)
    if tr.get("merges_identical") is False:
        lines.append(f"ERROR: fast and reference trainers learned different merges "
                     f"(first difference at merge {tr['first_merge_difference']})")
    lines.append(f"total runtime {report['total_runtime_s']:.1f} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    p.add_argument("--ref-repeats", type=int, default=1,
                   help="runs of the slow reference trainer (default 1; 0 skips it)")
    p.add_argument("--encode-mb", type=float, default=1.0,
                   help="repeat the held-out text to about this many MB for encoding timings (default 1)")
    p.add_argument("--corpus", default="pydoc", help="built-in corpus name (default pydoc)")
    p.add_argument("--timer", choices=("wall", "cpu"), default="wall",
                   help="wall clock (default), or this process's CPU time (steadier when other work shares the machine)")
    p.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH (atomic write)")
    args = p.parse_args(argv)
    for bad, message in ((args.repeats < 1, "--repeats must be at least 1"),
                         (args.ref_repeats < 0, "--ref-repeats must be >= 0"),
                         (args.encode_mb <= 0, "--encode-mb must be positive"),  # and fail now, not after minutes:
                         (args.json and not Path(args.json).resolve().parent.is_dir(), "--json: no such directory")):
        if bad:
            p.error(message)

    start = time.perf_counter()
    CLOCK[0] = time.process_time if args.timer == "cpu" else time.perf_counter
    text = load_corpus(args.corpus)
    train_text, held_out = split_text(text)
    Tokenizer()  # compile the split regex once (cached) so no timed run pays for it
    if os.environ.get("OPENBLAS_CORETYPE"):
        log(f"WARNING: OPENBLAS_CORETYPE={os.environ['OPENBLAS_CORETYPE']} is set and forces the BLAS kernel; "
            "run with env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE")

    report: dict = {
        "machine": machine_info(),
        "settings": {"repeats": args.repeats, "ref_repeats": args.ref_repeats, "encode_mb": args.encode_mb,
                     "corpus": args.corpus, "timer": f"{args.timer} ({CLOCK[0].__name__})"},
        "corpus": {"chars": len(text), "bytes": len(text.encode("utf-8")),
                   "train_bytes": len(train_text.encode("utf-8")), "held_out_bytes": len(held_out.encode("utf-8"))},
    }
    report["training"] = bench_training(text, args.repeats, args.ref_repeats)
    enc = report["encoding"] = bench_encoding(train_text, held_out, args.repeats, args.encode_mb)
    report["huggingface"] = bench_hf(train_text, Tokenizer().pattern, enc["fast_4096_train_split"]["median_s"],
                                     args.repeats)

    tr = report["training"]
    report["targets"] = {
        "ref_over_fast": {"value": tr["ref_over_fast"], "target": f">= {TARGET_REF_RATIO}",
                          "pass": None if tr["ref_over_fast"] is None else tr["ref_over_fast"] >= TARGET_REF_RATIO},
        "fast_train_4096": {"value": tr["fast_4096"]["median_s"], "target": f"< {TARGET_TRAIN_4096_S} s",
                            "pass": tr["fast_4096"]["median_s"] < TARGET_TRAIN_4096_S},
    }
    fast = {k: enc[k]["fast"]["mbps_median"] for k in ("never_seen", "cold", "repeated")}
    tk = enc["never_seen"].get("tiktoken")
    ratio = fast["never_seen"] / tk["mbps_median"] if tk else None
    for name, value, target in (("never_seen_mbps", fast["never_seen"], TARGET_NEVER_SEEN_MBPS),
                                ("never_seen_vs_tiktoken", ratio, TARGET_NEVER_SEEN_RATIO),
                                ("cold_mbps", fast["cold"], TARGET_COLD_MBPS),
                                ("repeated_mbps", fast["repeated"], TARGET_WARM_MBPS)):
        report["targets"][name] = {"value": value, "target": f">= {target}",
                                   "pass": None if value is None else value >= target}
    report["total_runtime_s"] = time.perf_counter() - start

    print(render(report))
    if args.json:
        atomic_write(args.json, json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    ids_differ = False in (enc["fast_equals_reference"], enc["fast_equals_tiktoken"])
    return 1 if tr.get("merges_identical") is False or ids_differ else 0


if __name__ == "__main__":
    sys.exit(main())
