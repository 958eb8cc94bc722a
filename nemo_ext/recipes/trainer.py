"""The Lightning Trainer of a stage, with NeMo's exp_manager (loggers, checkpoints) in the run folder, and the
closing of its loggers."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

from omegaconf import OmegaConf, open_dict

from nemo_ext.recipes.devices import world_size
from nemo_ext.recipes.run_folder import RunFolder


def manual_gradient_clipping(settings) -> tuple[float, str] | None:
    """The trainer's gradient clipping when the model steps its optimizer itself (GRPO with num_iterations > 1):
    Lightning refuses `gradient_clip_val` for manual optimization, so the model applies it, at the same point."""
    if getattr(settings.algorithm, "num_iterations", 1) == 1:
        return None
    value = settings.trainer.arguments.get("gradient_clip_val")
    if not value:
        return None
    return float(value), settings.trainer.arguments.get("gradient_clip_algorithm") or "norm"


def trainer_arguments(trainer, clipped_by_the_model: bool = False) -> dict:
    """Lightning Trainer arguments from `trainer` (TrainerSettings), with the step budget and strategy resolved.
    `clipped_by_the_model`: gradient clipping is left to the model (manual_gradient_clipping)."""
    trainer_kwargs = dict(trainer.arguments)
    if clipped_by_the_model:
        trainer_kwargs.pop("gradient_clip_val", None)
        trainer_kwargs.pop("gradient_clip_algorithm", None)
    if trainer_kwargs.get("strategy", "auto") == "auto" and world_size(trainer_kwargs) > 1:
        # MagpieTTS leaves some parameters (local_transformer*) without gradients in a PO step:
        # plain DDP fails at step 2 with "Expected to have finished reduction in the prior iteration".
        trainer_kwargs["strategy"] = "ddp_find_unused_parameters_true"
    if trainer_kwargs.get("max_epochs") is None:
        # A budget in steps alone just works (Lightning's default max_epochs would stop it at an epoch end);
        # with no budget at all, one pass over the data.
        max_steps = trainer_kwargs.get("max_steps")
        trainer_kwargs["max_epochs"] = -1 if max_steps is not None and max_steps > 0 else 1
    # exp_manager adds the loggers and the checkpoint callback itself.
    trainer_kwargs.update(logger=False, enable_checkpointing=False)
    return trainer_kwargs


# Lightning's names for DDP, and whether each finds unused parameters.
_DDP_STRATEGIES = {
    "ddp": False,
    "ddp_find_unused_parameters_false": False,
    "ddp_find_unused_parameters_true": True,
}


def with_collective_timeout(trainer_kwargs: dict, timeout_s: float) -> dict:
    """`trainer_kwargs` with a DDP strategy named by string replaced by the same strategy whose process group
    times out after `timeout_s` (faults.collective_timeout_s): a hung rank then ends the job in that time instead of
    Lightning's 30 minutes. Other strategies (a single device, FSDP, DeepSpeed) are left as they are."""
    name = trainer_kwargs.get("strategy")
    if not isinstance(name, str) or name not in _DDP_STRATEGIES:
        return trainer_kwargs
    from datetime import timedelta

    from lightning.pytorch.strategies import DDPStrategy

    strategy = DDPStrategy(find_unused_parameters=_DDP_STRATEGIES[name], timeout=timedelta(seconds=timeout_s))
    return {**trainer_kwargs, "strategy": strategy}


def build_trainer(settings, folder: RunFolder, callbacks: list | None = None):
    """A Lightning Trainer from the stage's settings, logging and checkpointing set up by NeMo's exp_manager in
    `folder`."""
    import lightning.pytorch as pl
    from lightning.pytorch.plugins.environments import SLURMEnvironment
    from nemo.utils.exp_manager import exp_manager

    trainer_kwargs = trainer_arguments(
        settings.trainer, clipped_by_the_model=manual_gradient_clipping(settings) is not None
    )
    if settings.faults is not None:
        trainer_kwargs = with_collective_timeout(trainer_kwargs, settings.faults.collective_timeout_s)
    if SLURMEnvironment.detect():
        # Our StopOnSignal handles SIGUSR1 at a batch boundary; Lightning's handler would save inside the
        # signal handler (a deadlock risk under DDP) and requeue before the run has stopped.
        trainer_kwargs["plugins"] = list(trainer_kwargs.get("plugins") or []) + [SLURMEnvironment(auto_requeue=False)]
    trainer = pl.Trainer(callbacks=list(callbacks or []), **trainer_kwargs)
    # NeMo 3.0.0's exp_manager reads `trainer.accelerator_connector.is_slurm_managing_tasks`, which Lightning 2
    # renamed to a private attribute: every multi-node run logged "You are running multi-node training without
    # SLURM handling the processes", also under SLURM. Give it the answer Lightning 2 has.
    trainer.accelerator_connector = SimpleNamespace(
        is_slurm_managing_tasks=isinstance(trainer._accelerator_connector.cluster_environment, SLURMEnvironment)
    )
    exp_manager_cfg = OmegaConf.create(dict(settings.exp_manager.node))
    with open_dict(exp_manager_cfg):
        exp_manager_cfg.version = folder.version
        exp_manager_cfg.use_datetime_version = False
        exp_manager_cfg.resume_if_exists = False  # the run folder picks the checkpoint (run_folder.py)
    for key, value in folder.kept:  # a continued run keeps what a new SLURM job would derive anew (its W&B group)
        OmegaConf.update(exp_manager_cfg, key.removeprefix("exp_manager."), value, force_add=True)
    exp_manager(trainer, exp_manager_cfg)
    drop_failing_wandb(trainer)
    return trainer


def drop_failing_wandb(trainer) -> None:
    """Start the W&B run now; if W&B cannot start (bad WANDB_MODE, no network, no key), train without it."""
    from lightning.pytorch.loggers import WandbLogger

    kept = []
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            try:
                logger.experiment  # noqa: B018 - creating the run is the check
            except Exception as error:  # wandb raises many types (UsageError, CommError, ValueError...)
                warnings.warn(
                    f"W&B logging disabled, training continues without it: {type(error).__name__}: {error}",
                    stacklevel=2,
                )
                continue
        kept.append(logger)
    trainer.loggers = kept


def finish_loggers(trainer, exit_code: int = 0, preempted: bool = False) -> None:
    """Close the W&B run so its files are complete on disk and a later run in this process starts a new one.
    `exit_code` is recorded in the run (non-zero: W&B shows it failed); `preempted` marks a stop on request.

    This also stops this process's W&B service; the next `wandb.init` starts a fresh one."""
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    finished = False
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and trainer.is_global_zero and logger._experiment is not None:
            if preempted:
                logger.experiment.mark_preempting()
            logger.experiment.finish(exit_code=exit_code)
            finished = True
    if finished:
        # run.finish() returns before wandb-core has flushed the .wandb file: read back at once, the last
        # steps were missing in 6 of 40 offline runs (wandb 0.31). Tearing the service down waits for the
        # flush (0 of 40).
        wandb.teardown()
