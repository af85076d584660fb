"""Stopping a training run cleanly: Ctrl-C or SIGTERM ask the loop to stop between two steps.

`Trainer.run` enters `StopOnSignal` around its loop. The handler only sets a flag; the
loop checks it after each step, saves the checkpoint and raises `TrainingInterrupted`,
so a run that is stopped never loses more than the step in progress.
"""

from __future__ import annotations

import signal
import sys
import threading


class StopOnSignal:
    """While active (main thread only), Ctrl-C or SIGTERM asks the loop to stop after the current step.

    SIGTERM is what ``kill``, ``timeout`` and job schedulers send; it is treated like
    Ctrl-C (the step finishes, the checkpoint is saved) when it is in ``names``. A second
    signal of the same kind acts at once, as it would without this handler.
    """

    MESSAGES = {"SIGINT": "Ctrl-C: stopping after this step (press Ctrl-C again to stop at once)",
                "SIGTERM": "SIGTERM: stopping after this step to save a checkpoint (a second SIGTERM stops at once)"}

    def __init__(self, names=("SIGINT",)):
        self.requested, self.signal_name, self._previous, self._expect_own = False, None, {}, False
        self._signals = [getattr(signal, n) for n in names if hasattr(signal, n)]

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self._signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if not self.requested:
            self.requested, self.signal_name = True, name
        self._restore(signum)  # the second signal acts at once
        print(f"\n{self.MESSAGES.get(name, name)}", file=sys.stderr, flush=True)

    def _restore(self, sig) -> None:
        previous = self._previous.get(sig)
        if previous is None:  # a handler set outside Python: fall back to Python's own default
            previous = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        signal.signal(sig, previous)

    def expect_own_signal(self) -> None:
        """The run stops. If a peer's signal stopped it (a data-parallel rank) before this process's own
        came, the first signal after `__exit__` is taken without effect: torchrun sends every rank one,
        and it would be a `KeyboardInterrupt` in whatever runs next. Later signals act as usual."""
        self._expect_own = True

    def _take_own(self, signum, frame):
        self._restore(signum)

    def __exit__(self, *exc):
        for sig in self._previous:
            if self._expect_own and not self.requested:  # its own has not come yet
                signal.signal(sig, self._take_own)
            else:
                self._restore(sig)
        return False
