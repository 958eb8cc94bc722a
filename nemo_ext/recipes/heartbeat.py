"""Each rank's heartbeat: a thread rewrites <run folder>/state/heartbeat/rank<R>.json every
`faults.heartbeat_every_s` with the rank's node, pid, step and the time. A stopped or killed process stops beating;
a rank stuck in a call keeps beating at the same step. A stopped process that is continued (srun sends SIGCONT
before it ends a job step) beats again, so each beat also carries the longest stall of the attempt: the longest
gap between two beats, and the step it began at. Each finished step also beats at once, so the step in the file is
never behind a checkpoint the rank saved (the launcher's "failed at step" must not be older than the checkpoint the
restart continues from). When a job fails, the launcher reads the files
(nemo_ext/recipes/fault_report.py) to say which rank went quiet and at which step."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable

HEARTBEAT_DIR = os.path.join("state", "heartbeat")


def node_name() -> str:
    """SLURM's name for this node (what the job's node list says), else the host name."""
    return os.environ.get("SLURMD_NODENAME") or socket.gethostname()


def heartbeat_path(run_folder: str, rank: int) -> str:
    return os.path.join(run_folder, HEARTBEAT_DIR, f"rank{rank}.json")


def stalled_after(every_s: float) -> float:
    """A gap between two beats longer than two missed beats and a second of slack is a stall."""
    return 2 * every_s + 1


class Heartbeat:
    """with Heartbeat(folder, rank, every_s, step_of=lambda: trainer.global_step): ..."""

    def __init__(self, run_folder: str, rank: int, every_s: float, step_of: Callable[[], int | None]):
        self.path = heartbeat_path(run_folder, rank)
        self.rank, self.every_s, self.step_of = rank, every_s, step_of
        self._stop = threading.Event()
        self._writing = threading.Lock()  # the thread and a finished step both write the file
        self.training = False  # set by the training_started() callback
        self.stall: dict | None = None  # {"for_s", "step", "since"}: the longest gap of more than two beats
        self._thread = threading.Thread(target=self._beat_until_stopped, name="magpie-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def training_started(self):
        """A Lightning callback that lets the beats carry the trainer's step once training has begun (after a
        checkpoint was restored): before that a beat's step is null, "in set-up". It also beats after each
        finished step."""
        from lightning.pytorch import Callback

        heartbeat = self

        class TrainingStarted(Callback):
            def on_train_start(self, trainer, pl_module) -> None:
                heartbeat.training = True

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
                heartbeat.beat()

        return TrainingStarted()

    def beat(self) -> None:
        step = self._step_or_none()
        content = {
            "rank": self.rank,
            "node": node_name(),
            "pid": os.getpid(),
            "step": step,
            "time": time.time(),
            "every_s": self.every_s,
            "stall": self.stall,
        }
        temporary = f"{self.path}.{os.getpid()}.tmp"
        try:
            with self._writing:
                with open(temporary, "w") as f:
                    json.dump(content, f)
                os.replace(temporary, self.path)
        except OSError:  # a full or vanished disk must not end the run; the report then says the beat stopped
            pass

    def _beat_until_stopped(self) -> None:
        last, last_step = time.monotonic(), self._step_or_none()
        while not self._stop.wait(self.every_s):
            now = time.monotonic()
            gap = now - last
            # The monotonic clock runs on while a process is stopped: a long gap is a stop, a freeze, or a call
            # that held the interpreter's lock.
            if gap > stalled_after(self.every_s) and (self.stall is None or gap > self.stall["for_s"]):
                self.stall = {"for_s": round(gap, 1), "step": last_step, "since": time.time() - gap}
            self.beat()
            last, last_step = now, self._step_or_none()

    def _step_or_none(self) -> int | None:
        if not self.training:
            return None
        try:
            return self.step_of()
        except Exception:  # the trainer is being torn down: the last known step is in the file
            return None
