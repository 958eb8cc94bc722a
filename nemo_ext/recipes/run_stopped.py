"""How a stopped run ends: the exception a stop raises at a batch boundary, and the exit code of unfinished work
that continues (SLURM scripts requeue on it). Imports nothing heavy: the entry point needs these before torch."""

from __future__ import annotations

# EX_TEMPFAIL: stopped on request with the progress saved; run the same command with resume=<run folder>.
EXIT_STOPPED = 75


class RunStopped(Exception):
    """Raised at a batch boundary after a stop request; the run is resumable from `checkpoint` (None when no
    step had been trained in this attempt, or for DataGen, whose per-item files are its progress)."""

    def __init__(self, signal_name: str, global_step: int, checkpoint: str | None):
        self.signal_name, self.global_step, self.checkpoint = signal_name, global_step, checkpoint
        self.run_folder: str | None = None  # set by the StageRun that ends with it
        saved = f"checkpoint {checkpoint}" if checkpoint else "no new checkpoint (nothing trained in this attempt)"
        super().__init__(f"stopped by {signal_name} at step {global_step}; {saved}")
