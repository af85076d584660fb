"""Every core at work: a training step split into one batch shard per core, one thread each.

A numpy training step does two kinds of work. Matrix products go to the BLAS
library, which spreads each one over all the cores. Everything else (softmax,
GELU, the norms, residual adds, copies) is a numpy loop on one core, so on a
2-core machine half of the machine waits through a third or more of the step.

Data parallelism fixes that, the same idea `training.distributed` uses across
processes and machines, here across the cores of one machine: the batch is cut
into shards of whole sequences, each shard's forward and backward runs in its
own thread, and the shards' gradients are added. The threads really do run at
the same time: numpy lets go of Python's GIL inside its loops and its BLAS calls.
While they run, BLAS is held to one thread (two shards each asking BLAS for
every core would fight over the cores), and the previous setting comes back
after. The result is the gradient of the same mean loss, up to float rounding
(the sums are taken in another order); ``GPT(config, threads=1)`` runs the
plain one-thread loop, the reference this is tested against.

    >>> [(s.start, s.stop) for s in shard_slices(5, 2)]
    [(0, 3), (3, 5)]
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional, Sequence

import numpy as np

MAX_THREADS = 8  # beyond this, a batch of a few sequences gives each thread too little work
MIN_SHARD_VALUES = 1 << 16  # activation values (rows x T x C) a shard needs to be worth a thread
_pool: dict = {}  # threads -> ThreadPoolExecutor, made on first use
_busy = threading.Lock()  # one sharded region at a time; a nested or concurrent call runs on one thread
_blas: dict = {}  # the threadpoolctl controller (or None if it cannot limit BLAS), found once


def available() -> int:
    """The cores this process may run on (its CPU affinity), at most `MAX_THREADS`."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_THREADS))


def resolve(threads: Optional[int]) -> int:
    """``threads`` checked: None means `available`; otherwise a positive int."""
    if threads is None:
        return available()
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive int (1: one thread, the plain loop) or None (one per core), "
                         f"got {threads!r}")
    return int(threads)


def shard_slices(batch: int, threads: int, row_values: int = MIN_SHARD_VALUES) -> list[slice]:
    """Cut ``batch`` rows into at most ``threads`` contiguous shards, sizes differing by at most one.

    ``row_values`` is the size of one row's activations (T·C for a sequence): a shard gets at
    least `MIN_SHARD_VALUES` of them, since below that a thread costs more than it saves.
    """
    n = max(1, min(int(threads), int(batch), int(batch) * int(row_values) // MIN_SHARD_VALUES))
    size, extra = divmod(int(batch), n)  # the first `extra` shards take one row more
    edges = [0]
    for i in range(n):
        edges.append(edges[-1] + size + (1 if i < extra else 0))
    return [slice(edges[i], edges[i + 1]) for i in range(n)]


def blas_controller():
    """threadpoolctl's controller, if it finds a BLAS it can limit; else None (then shards run one by one)."""
    if "ctl" not in _blas:
        try:
            from threadpoolctl import ThreadpoolController
            ctl = ThreadpoolController().select(user_api="blas")
            _blas["ctl"] = ctl if len(ctl.lib_controllers) else None
        except Exception:  # not installed, or a platform it cannot inspect
            _blas["ctl"] = None
    return _blas["ctl"]


def blas_threads(n: int):
    """A context in which BLAS uses at most ``n`` threads (nothing changes if BLAS cannot be limited)."""
    ctl = blas_controller()
    return ctl.limit(limits=n) if ctl is not None else contextlib.nullcontext()


def run(fn: Callable, items: Sequence, threads: int) -> list:
    """``[fn(item) for item in items]``, the items in up to ``threads`` threads at once, BLAS on one thread.

    Runs in the calling thread, one item after another, when there is one item or one
    thread, when BLAS cannot be limited, or when another sharded region is running
    (a call from inside ``fn``, or from a second Python thread). The first exception
    an item raises is raised here, after every item has finished.
    """
    items = list(items)
    ctl = blas_controller() if len(items) > 1 and threads > 1 else None
    if ctl is None or not _busy.acquire(blocking=False):
        return [fn(item) for item in items]
    try:
        n = min(threads, len(items))
        pool = _pool.get(n)
        if pool is None:
            pool = _pool[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="minitransformer-shard")
        with ctl.limit(limits=1):  # each item in a copy of the caller's context: its modes (`nn.no_grad`, ...)
            futures = [pool.submit(contextvars.copy_context().run, fn, item) for item in items]
            errors = [f.exception() for f in futures]  # waits for all of them
        for e in errors:
            if e is not None:
                raise e
        return [f.result() for f in futures]
    finally:
        _busy.release()

