"""One launch of a stage, from just after validation to exit: stop handling, the run folder, the outcome."""

from __future__ import annotations

import contextlib
import os
import socket
import warnings

from omegaconf import DictConfig

from nemo_ext.checkpoints import configs_in_checkpoints_allowed
from nemo_ext.compat import backport_tar_extraction_filter
from nemo_ext.recipes.devices import devices_per_node
from nemo_ext.recipes.heartbeat import Heartbeat, outcome_of
from nemo_ext.recipes.model_config import writable_config
from nemo_ext.recipes.run_folder import FAILED, FINISHED, INTERRUPTED, RunFolder, open_run_folder
from nemo_ext.recipes.run_stopped import EXIT_STOPPED, RunStopped
from nemo_ext.recipes.seeding import RankRandomStreams, seed_run
from nemo_ext.recipes.stopping import StopOnSignal
from nemo_ext.recipes.trainer import build_trainer, finish_loggers, manual_gradient_clipping
from nemo_ext.stages.stage import rank_from_environment


class StageRun:
    """One launch of a stage, from just after validation to exit: the stop handlers (installed first, so a
    signal during set-up is kept), the run folder, and the outcome written to the folder and to W&B.

        with StageRun(settings) as run:
            model, trainer = run.fit(MagpieTTSOnlinePO, model_cfg, callbacks)

    On leaving: finished -> status `finished`, W&B exit 0; RunStopped -> status `interrupted`, W&B marked
    preempted with exit EXIT_STOPPED, and RunStopped propagates (the entry point exits EXIT_STOPPED); any other
    error -> status `failed`, W&B exit 1. The lock is released in every case."""

    def __init__(self, settings, saves_checkpoints: bool = True):
        self.settings, self.stage, self.saves_checkpoints = settings, settings.stage.name, saves_checkpoints
        self.stopper = StopOnSignal()
        self.folder: RunFolder | None = None
        self.trainer = None
        self.heartbeat: Heartbeat | None = None

    def __enter__(self) -> StageRun:
        backport_tar_extraction_filter()  # NeMo restores .nemo files with a tarfile API Debian 12's Python lacks
        self.stopper.install()
        try:
            self.folder = open_run_folder(self.settings)
        except BaseException:
            self.stopper.uninstall()
            raise
        if self.saves_checkpoints:
            self.stopper.checkpoint_dir = self.folder.checkpoint_dir
        if self.settings.faults is not None:
            self.heartbeat = Heartbeat(
                self.folder.path, self.rank, self.settings.faults.heartbeat_every_s, self._step
            ).__enter__()
        return self

    @property
    def rank(self) -> int:
        """This process's global rank, before the trainer exists (from its launcher's environment)."""
        arguments = self.settings.trainer.arguments
        per_node = devices_per_node(arguments.get("devices", "auto"), str(arguments.get("accelerator", "auto")))
        return rank_from_environment(per_node)

    def _step(self) -> int | None:
        return self.trainer.global_step if self.trainer is not None else None

    def __exit__(self, kind, error, traceback) -> None:
        outcome = f"stopped by {error.signal_name}" if isinstance(error, RunStopped) else outcome_of(kind, error)
        try:
            step = self.trainer.global_step if self.trainer is not None else None
            if error is None:
                self.folder.write_state(status=FINISHED, global_step=step)
                if self.trainer is not None:
                    finish_loggers(self.trainer)
                    # As for a stop: every rank leaves together, after rank 0 closed the W&B run. A rank that
                    # exits early while another is still saving or closing can make the other fail on its way out
                    # (srun ends the step on the first bad exit). The last beat ("finished") follows the barrier:
                    # the launcher reads it as "every rank was done".
                    _barrier_if_distributed()
                if self.folder.owner:
                    print(f"[magpie] {self.stage} finished: run_folder={self.folder.path}", flush=True)
            elif isinstance(error, RunStopped):
                error.run_folder = self.folder.path
                self.folder.write_state(status=INTERRUPTED, global_step=error.global_step, stopped_by=error.signal_name)
                if self.trainer is not None:
                    finish_loggers(self.trainer, exit_code=EXIT_STOPPED, preempted=True)
                    # Every rank agreed to stop at this step and is alive: leave together, after rank 0 closed
                    # the W&B run, so no rank's exit makes srun kill another mid-shutdown.
                    _barrier_if_distributed()
            else:
                self.folder.write_state(status=FAILED, global_step=step, error=f"{kind.__name__}: {error}"[:500])
                if self.trainer is not None:
                    try:
                        finish_loggers(self.trainer, exit_code=1)
                    except Exception as logger_error:  # never hide the run's own error behind the logger's
                        warnings.warn(f"could not close the W&B run: {logger_error}", stacklevel=2)
        finally:
            if self.heartbeat is not None:
                self.heartbeat.end(outcome)
            self.folder.release()
            self.stopper.uninstall()

    def _build(self, model_class, model_cfg: DictConfig, callbacks: list):
        callbacks = list(callbacks) + [self.stopper]
        seed = self.settings.run.seed
        if seed is not None:
            callbacks.append(RankRandomStreams(seed))
        if self.heartbeat is not None:
            callbacks.append(self.heartbeat.training_started())
        self.trainer = build_trainer(self.settings, self.folder, callbacks=callbacks)
        print(
            f"[magpie] rank {self.trainer.global_rank} of {self.trainer.world_size} on {socket.gethostname()}",
            flush=True,
        )
        if seed is not None:
            # One data order for every rank; each rank its own stream once DDP is set up (seeding.py). Building
            # the models, the steps and the stops are then the same from run to run.
            seed_run(seed)
        with configs_in_checkpoints_allowed():  # NeMo torch.loads Lightning checkpoints (configs inside)
            model = model_class(cfg=model_cfg, trainer=self.trainer, settings=self.settings.algorithm)
            # NeMo pops `init_from_ptl_ckpt` from the config it is given: a copy of ours.
            model.maybe_init_from_pretrained_checkpoint(cfg=writable_config(self.settings))
        clipping = manual_gradient_clipping(self.settings)
        if clipping is not None:
            model.manual_gradient_clipping = clipping
        # Building the models takes a while; a stop requested meanwhile ends the run before its first step. With
        # several ranks this must be decided together (a rank may get the signal a moment later and would wait in
        # a collective for one that left): then the first batch start decides, where all ranks take the max.
        if self.trainer.world_size == 1:
            self.stopper.raise_if_received(self.trainer.global_step)
        return model

    def fit(self, model_class, model_cfg: DictConfig, callbacks: list):
        """Build the trainer and the model, initialize it from the checkpoint, `trainer.fit` (from the run
        folder's newest checkpoint when continuing)."""
        model = self._build(model_class, model_cfg, callbacks)
        checkpoint = self.folder.newest_checkpoint() if self.folder.resuming else None
        if checkpoint:
            print(f"[magpie] continuing {self.folder.path} from {checkpoint}", flush=True)
        with _sigterm_exception_is_a_stop(self.trainer):
            self.trainer.fit(model, ckpt_path=checkpoint)
        self._ensure_final_checkpoint()
        return model, self.trainer

    def _ensure_final_checkpoint(self) -> None:
        """A finished run always leaves a checkpoint of its last step. NeMo's checkpoint callback saves `last` at
        train end only when `val_check_interval % global_step != 0`, so a run that ends at step 1 got none."""
        if not self.saves_checkpoints or not self.trainer.checkpoint_callbacks:
            return
        step = self.trainer.global_step
        saved = self.folder.checkpoint_steps()
        if step > 0 and step not in saved:
            self.trainer.save_checkpoint(os.path.join(self.folder.checkpoint_dir, f"final-step={step}.ckpt"))

    def test(self, model_class, model_cfg: DictConfig, callbacks: list):
        """Like fit, with `trainer.test` over `model_cfg.test_ds`."""
        model = self._build(model_class, model_cfg, callbacks)
        if getattr(model, "_test_dl", None) is None:
            model.setup_test_data(model_cfg.test_ds)
        with _sigterm_exception_is_a_stop(self.trainer):
            self.trainer.test(model)
        return model, self.trainer


def _barrier_if_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def _sigterm_exception_is_a_stop(trainer):
    """Lightning's SIGTERMException is a SystemExit without a code (exit 0). StopOnSignal replaces Lightning's
    handler once training starts; a SIGTERM in the moment before that is still a stop, never a success."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    try:
        yield
    except SIGTERMException:
        raise RunStopped("SIGTERM", trainer.global_step, None) from None
