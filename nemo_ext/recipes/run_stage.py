"""The one skeleton every stage runs through: parse the config into the stage's settings (every check, before
anything is built), stop there for a dry run, else run the stage's loop. Callable without Hydra:

    from nemo_ext.stages import ONLINE_PO
    result = ONLINE_PO.run(cfg)            # or run_stage(ONLINE_PO, cfg, callbacks=[...])
"""

from __future__ import annotations

import glob
import importlib
import os
from dataclasses import dataclass

from nemo_ext.stages.stage import Stage, StageSettings, rank_from_environment


@dataclass
class StageResult:
    """What a finished stage leaves: its model and trainer (None where it builds none) and where it wrote."""

    settings: StageSettings
    run_folder: str | None = None
    model: object = None
    trainer: object = None
    log_dir: str | None = None
    audio_dir: str | None = None  # DataGen: the generated samples

    def metrics_files(self) -> list[str]:
        from nemo_ext.datagen_layout import METRICS_SUFFIX

        return sorted(glob.glob(os.path.join(self.audio_dir, f"*{METRICS_SUFFIX}"))) if self.audio_dir else []


def import_object(path: str):
    """ "package.module:Name" -> the object."""
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def run_stage(stage: Stage, cfg, callbacks: list | None = None):
    """Run `stage` on a composed config; `callbacks` are extra Lightning callbacks. Returns the stage runner's result
    (a StageResult; the pair stage's PairsRun), None after a dry run."""
    settings = stage.parse(cfg)
    if settings.run.dry_run:
        if settings.stage.builds_a_model:
            from nemo_ext.recipes.run_folder import check_resume

            check_resume(settings)  # what the launch itself would refuse about resume=, before anything is queued
        print_dry_run(settings)
        return None
    runner = import_object(stage.runner) if stage.runner else fit
    return runner(settings, list(callbacks or []))


def print_dry_run(settings: StageSettings) -> None:
    whisper = getattr(settings.algorithm, "whisper", None) or getattr(
        getattr(settings.algorithm, "rewards", None), "whisper", None
    )
    shown = f"; whisper={whisper.pretrained} dtype={whisper.dtype}" if whisper is not None else ""
    print(
        f"[dry-run] {settings.stage.name}: config valid, input paths exist{shown} (rank {rank_from_environment()})",
        flush=True,
    )
    if settings.stage.builds_a_model:
        from nemo_ext.recipes.run_folder import planned_run_folder

        folder = planned_run_folder(settings)
        if folder:
            print(f"[dry-run] run folder: {folder}", flush=True)


def fit(settings: StageSettings, callbacks: list) -> StageResult:
    """The training stages' loop: trainer.fit of the stage's model class, continuing the run folder's newest
    checkpoint when resuming."""
    from nemo_ext.recipes.model_config import stage_model_config
    from nemo_ext.recipes.stage_run import StageRun
    from nemo_ext.telemetry import telemetry_callbacks

    model_cfg = stage_model_config(settings)
    model_class = import_object(settings.stage.model_class)
    callbacks = telemetry_callbacks(settings) + list(callbacks)
    with StageRun(settings) as run:
        model, trainer = run.fit(model_class, model_cfg, callbacks)
    return StageResult(settings, run.folder.path, model=model, trainer=trainer, log_dir=trainer.log_dir)
