"""Benchmark the contract kit: the time `check_stage` takes over every built-in variant, whole matrix.

Each built-in variant of each kind (`core.registry.KINDS`) is checked with its
default matrix of configurations (`kit.matrix`), and once more with
``reference=`` itself (which adds the "matches reference" line); each figure is
the median of ``--repeats`` runs (``time.perf_counter``). Target: the whole kit
over all built-ins, with references, under 20 s, so a student runs it after every
edit. Every report must also pass: a failing built-in is printed and marked FAIL.

    python benchmarks/bench_kit.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from minitransformer.core import registry
from minitransformer.kit import check_stage

TARGET_S = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    builtins = [(kind, name) for kind in registry.KINDS for name in registry.names(kind)
                if registry.get(kind, name).builtin]
    totals, rows, all_ok = [], {}, True
    for _ in range(args.repeats):
        total = 0.0
        for kind, name in builtins:
            start = time.perf_counter()
            report = check_stage(kind, name, reference=name)
            took = time.perf_counter() - start
            total += took
            rows.setdefault((kind, name), []).append((took, len(report.labels), len(report.checks)))
            if not report.ok:
                all_ok = False
                print(report)
        totals.append(total)
    print(f"{'kind':<11} {'variant':<11} {'configs':>7} {'lines':>6} {'median s':>9}")
    for (kind, name), runs in rows.items():
        print(f"{kind:<11} {name:<11} {runs[0][1]:>7} {runs[0][2]:>6} {statistics.median(r[0] for r in runs):>9.3f}")
    median = statistics.median(totals)
    verdict = "PASS" if median < TARGET_S and all_ok else "FAIL"
    print(f"all built-ins, with references: median {median:.2f} s over {args.repeats} runs "
          f"(target < {TARGET_S:.0f} s; every report passed: {all_ok}) -> {verdict}")


if __name__ == "__main__":
    main()
