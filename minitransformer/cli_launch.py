"""The ``--nproc`` launcher of ``minitransformer train``: N data-parallel ranks under torchrun.

``train --nproc N`` runs the same command again as N processes under torchrun (each one rank of
`training.distributed`), passes signals on so that a stop never loses the step's work, and exits
with rank 0's code. ``python -m minitransformer`` under a plain torchrun works the same without it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path


# where rank 0 of a `train --nproc` run leaves its exit code: torchrun's own code says only that a rank
# ended with an error, also when it stopped cleanly on Ctrl-C, and not whether rank 0 saved
RANK0_EXIT_ENV = "MINITRANSFORMER_RANK0_EXIT"
FORWARDED = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

# torchrun itself, as `python -m torch.distributed.run` runs it, except that a stop it was asked for ends
# with the signal's exit code instead of a traceback printed below rank 0's "interrupted at step ..."
TORCHRUN = """import sys
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main
try:
    main()
except SignalException as exc:  # the ranks were handed the signal; rank 0 has said what it saved
    sys.exit(128 + int(exc.sigval))
"""


def launch_ranks(nproc: int, argv: list[str]) -> int:
    """Run ``python -m minitransformer <argv>`` as ``nproc`` ranks under torchrun; rank 0's exit code.

    Ctrl-C, SIGTERM or SIGHUP sent to this launcher (a terminal's Ctrl-C included) is passed on to
    torchrun as one SIGINT, which hands it to every rank: they finish their step, rank 0 saves and
    says where, and the launcher waits for them (exit 130, 143 for SIGTERM, 129 for SIGHUP). torchrun
    runs in a session of its own, so that a terminal's Ctrl-C does not reach it a second time: a
    second SIGINT cuts its shutdown short, and it would kill the ranks before rank 0 saved.
    """
    import subprocess
    import tempfile

    cmd = [sys.executable, "-c", TORCHRUN, "--standalone", f"--nproc-per-node={nproc}", "-m", "minitransformer",
           *argv]
    print("launching: torchrun " + " ".join(cmd[3:]), flush=True)
    stopped, pending, proc = [], [], None

    def pass_on(signum, frame):
        stopped.append(signum)
        if proc is None:  # torchrun is starting: passed on as soon as it runs
            pending.append(signum)
        elif proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # torchrun gives it to the ranks: a step finishes, rank 0 saves

    with tempfile.TemporaryDirectory(prefix="minitransformer-") as tmp:
        told = Path(tmp) / "rank0_exit"
        previous = {sig: signal.signal(sig, pass_on) for sig in FORWARDED}
        try:
            proc = subprocess.Popen(cmd, start_new_session=True, env={**os.environ, RANK0_EXIT_ENV: str(told)})
            if pending:
                proc.send_signal(signal.SIGINT)
            code = proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        rank0 = _exit_code_in(told)
    if rank0 is None and not stopped:  # torchrun failed before rank 0 ran: torchrun's code and message
        return code
    if rank0 is None:  # stopped, and rank 0 never finished: killed before it could save
        print("error: the ranks were ended before rank 0 could save; the last checkpoint written, if any, is "
              "intact", file=sys.stderr)
        return code or 1
    if stopped and rank0 == 128 + signal.SIGINT:
        return 128 + stopped[0]  # the signal the launcher was sent: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
    return rank0 or code  # 0 only if torchrun, too, saw every rank succeed


def _exit_code_in(path: Path):
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def tell_launcher(code: int) -> None:
    """Rank 0 of a ``train --nproc`` run: leave ``code`` where the launcher reads it (`launch_ranks`)."""
    path = os.environ.get(RANK0_EXIT_ENV)
    if path and os.environ.get("RANK") == "0":
        with contextlib.suppress(OSError):  # the launcher is gone: nobody to tell
            Path(path).write_text(str(code))
