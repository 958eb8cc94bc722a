"""Resuming a SLURM-requeued job from the checkpoint Lightning saved when SIGUSR1 arrived.

Lightning writes `hpc_ckpt_<n>.ckpt` into the trainer's root dir and, on restart, looks for it there. NeMo's
exp_manager, run first on the restart, moves every file of that dir into `run_<k>/`, so Lightning finds
nothing and training starts again from scratch. This picks the newest checkpoint of the run, wherever
exp_manager put it, and hands it to Lightning."""

from __future__ import annotations

import glob
import os

from lightning.pytorch.utilities import rank_zero_info


def newest_requeue_checkpoint(log_dir: str) -> str | None:
    candidates = glob.glob(os.path.join(log_dir, "hpc_ckpt_*.ckpt"))
    candidates += glob.glob(os.path.join(log_dir, "run_*", "hpc_ckpt_*.ckpt"))
    return max(candidates, key=os.path.getmtime) if candidates else None


def resume_after_requeue(trainer) -> str | None:
    """Point the trainer at the requeue checkpoint when it is newer than what exp_manager chose."""
    requeue_checkpoint = newest_requeue_checkpoint(trainer.default_root_dir)
    if requeue_checkpoint is None:
        return None
    chosen = trainer.ckpt_path
    if chosen and os.path.exists(chosen) and os.path.getmtime(chosen) >= os.path.getmtime(requeue_checkpoint):
        return None
    trainer.ckpt_path = requeue_checkpoint
    rank_zero_info(f"Resuming after SLURM requeue from {requeue_checkpoint}")
    return requeue_checkpoint
