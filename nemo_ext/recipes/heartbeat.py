"""Each rank's heartbeat: a thread rewrites <run folder>/state/heartbeat/rank<R>.json every
`faults.heartbeat_every_s` with the rank's node, pid, step and the time. A stopped or killed process stops beating;
a rank stuck in a call keeps beating at the same step. A stopped process that is continued (srun sends SIGCONT
before it ends a job step) beats again, so each beat also carries the longest stall of the attempt: the longest
gap between two beats in which the process did not run (a busy process that held the interpreter's lock, or one the
machine was too loaded to run, used CPU time meanwhile: that is no stall), and the step it began at. Each finished
step also beats at once, so the step in the file is never behind a checkpoint the rank saved (the launcher's "failed
at step" must not be older than the checkpoint the restart continues from). The last beat says how the rank ended
(finished, stopped, failed and why), so a rank that left is not taken for one that went quiet. When a job fails, the
launcher reads the files (nemo_ext/recipes/fault_report.py) to say which rank went quiet first and at which step."""

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


# A stopped or frozen process uses no CPU time; one that held the interpreter's lock or waited for a loaded CPU used
# some. Below this share of the gap the process is taken as not having run.
_STOPPED_CPU_SHARE = 0.2


class Heartbeat:
    """with Heartbeat(folder, rank, every_s, step_of=lambda: trainer.global_step): ..."""

    def __init__(self, run_folder: str, rank: int, every_s: float, step_of: Callable[[], int | None]):
        self.path = heartbeat_path(run_folder, rank)
        self.rank, self.every_s, self.step_of = rank, every_s, step_of
        self._stop = threading.Event()
        self._writing = threading.Lock()  # the thread and a finished step both write the file
        self.training = False  # set by the training_started() callback
        self.stall: dict | None = None  # {"for_s", "step", "since"}: the longest gap of more than two beats
        self.ended: str | None = None  # how the rank ended, in the last beat
        self._thread = threading.Thread(target=self._beat_until_stopped, name="magpie-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, kind, error, traceback) -> None:
        self.end(outcome_of(kind, error))

    def end(self, outcome: str) -> None:
        """The last beat, after the thread stopped: it says how the rank ended ("finished", "stopped by SIGTERM",
        "failed: <error>")."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.ended = outcome
        self.beat()

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
            "ended": self.ended,
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
        last, last_cpu, last_step = time.monotonic(), time.process_time(), self._step_or_none()
        while not self._stop.wait(self.every_s):
            now, cpu = time.monotonic(), time.process_time()
            gap = now - last
            # The monotonic clock runs on while a process is stopped; its CPU time does not.
            stopped = gap > stalled_after(self.every_s) and cpu - last_cpu < _STOPPED_CPU_SHARE * gap
            if stopped and (self.stall is None or gap > self.stall["for_s"]):
                self.stall = {"for_s": round(gap, 1), "step": last_step, "since": time.time() - gap}
            if self._stop.is_set():  # end() writes the last beat
                break
            self.beat()
            last, last_cpu, last_step = now, cpu, self._step_or_none()

    def _step_or_none(self) -> int | None:
        if not self.training:
            return None
        try:
            return self.step_of()
        except Exception:  # the trainer is being torn down: the last known step is in the file
            return None


def outcome_of(kind: type | None, error: BaseException | None) -> str:
    """How a rank ended, for its last beat: "finished", or "failed: " and the error in one line (its type and its
    message's first line, shortened)."""
    if error is None:
        return "finished"
    lines = str(error).strip().splitlines()
    return f"failed: {kind.__name__}: {lines[0] if lines else ''}"[:208]
