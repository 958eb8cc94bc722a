"""Stop signals recorded from a recipe's first line, before NeMo, torch and Lightning are imported (seconds on
a busy node). SIGUSR1's default action kills the process: a SLURM --signal that arrived during those imports
ended the job with no requeue. This module imports nothing but `signal`, so an entry script can call
`record_signals_from_now()` as its first statement; the run's StopOnSignal adopts what was recorded."""

from __future__ import annotations

import signal

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
received: list[str] = []


def _record(signum, frame) -> None:
    received.append(signal.Signals(signum).name)


def record_signals_from_now() -> None:
    for signum in STOP_SIGNALS:
        signal.signal(signum, _record)
