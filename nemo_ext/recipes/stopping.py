"""Stopping a run on SIGTERM, SIGINT (Ctrl-C) or SLURM's SIGUSR1 without losing steps or looking like success.

One mechanism for every stop request, the SLURM requeue included:
- The handlers are installed when the recipe starts, before any model is built, so a signal during set-up is
  not lost (SIGUSR1's default action would kill the process) and ends the run before its first step.
- A handler only records the signal. When the next batch starts, every rank takes the max of the ranks' flags
  (a collective every rank reaches), so all ranks stop at the same step, after the last step was logged.
  GRPO/DPO save a checkpoint there, then raise RunStopped: Lightning runs no validation pass and no further
  checkpoint saves after it.
- The recipe then marks the W&B run preempted, finishes it with exit code EXIT_STOPPED, marks the run folder
  `interrupted` and exits EXIT_STOPPED. The SLURM scripts requeue the job after `srun` returns that code, so
  the requeue never races the checkpoint or the W&B flush.
- A second Ctrl-C stops at once (KeyboardInterrupt), for a user who will not wait for the batch to end.

Lightning's own SIGTERM handling raises `SIGTERMException`, a `SystemExit` without a code: the process exited
0, as if training had finished, with nothing saved. Ours replaces it for the duration of fit/test."""

from __future__ import annotations

import os
import signal
import sys

import torch
from lightning.pytorch import Callback

from nemo_ext.recipes import early_signals
from nemo_ext.recipes.early_signals import STOP_SIGNALS
from nemo_ext.recipes.run_stopped import EXIT_STOPPED, RunStopped  # noqa: F401 - re-exported for callers


class StopOnSignal(Callback):
    def __init__(self, checkpoint_dir: str | None = None):
        self.checkpoint_dir = checkpoint_dir  # None: nothing to save (DataGen)
        self.received: str | None = None
        self._previous: dict[int, object] = {}
        self._start_step = 0  # global step this attempt started from (no checkpoint when nothing was trained)

    # ---- handlers ----
    def install(self) -> StopOnSignal:
        if early_signals.received and not self.received:
            self.received = early_signals.received[0]
            print(
                f"[magpie] {self.received} received during start-up: stopping before the first step",
                file=sys.stderr,
                flush=True,
            )
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)
        return self

    def uninstall(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.received and signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        if not self.received:
            print(
                f"[magpie] {name} received: stopping at the next batch boundary, after saving a checkpoint "
                "(Ctrl-C again stops at once)",
                file=sys.stderr,
                flush=True,
            )
        self.received = self.received or name

    def raise_if_received(self, global_step: int = 0) -> None:
        """Between set-up and fit: a signal that arrived while the models were being built ends the run now."""
        if self.received:
            raise RunStopped(self.received, global_step, None)

    # ---- Lightning hooks ----
    # Lightning registers its SIGTERM handler (SIGTERMException = exit 0, nothing saved) after on_fit_start and
    # before on_train_start / on_test_start; ours takes its place there. Lightning restores the handlers it found
    # (ours) when fit/test ends.
    def on_test_start(self, trainer, pl_module):
        self.install()

    def on_train_start(self, trainer, pl_module):
        self.install()
        self._align_logged_step(trainer)  # the checkpoint is restored by now

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # Checked when the next batch starts, not when the last one ends: by now Lightning has logged the last
        # step's metrics and NeMo has saved its cadence checkpoint, so the stop loses nothing of that step.
        if not self._any_rank_signalled(trainer):
            return
        path = None
        if self.checkpoint_dir is not None and trainer.global_step > self._start_step:
            path = os.path.join(self.checkpoint_dir, f"stopped-step={trainer.global_step}.ckpt")
            trainer.save_checkpoint(path)  # a collective: every rank is here
        raise RunStopped(self.received or "a signal on another rank", trainer.global_step, path)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if self._any_rank_signalled(trainer):
            raise RunStopped(self.received or "a signal on another rank", batch_idx, None)

    def _any_rank_signalled(self, trainer) -> bool:
        flag = torch.tensor([float(self.received is not None)], device=trainer.strategy.root_device)
        return bool(trainer.strategy.all_gather(flag).max() > 0)

    def _align_logged_step(self, trainer) -> None:
        """Lightning labels logged rows with `_batches_that_stepped`, restored from the checkpoint. A checkpoint
        written at a batch end (NeMo's step cadence) holds it one lower than the global step,
        so after a resume every `train_*` row would sit one W&B step behind the telemetry rows and behind the
        steps actually run. Without gradient accumulation the two counters are equal by definition."""
        self._start_step = trainer.global_step
        loop = trainer.fit_loop.epoch_loop
        if trainer.accumulate_grad_batches == 1 and loop._batches_that_stepped != trainer.global_step:
            loop._batches_that_stepped = trainer.global_step
