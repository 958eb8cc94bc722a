"""Config preparation and trainer construction shared by the stage recipes."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from types import SimpleNamespace

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from nemo_ext.checkpoints import configs_in_checkpoints_allowed
from nemo_ext.config import (
    NemoModelSettings,
    WhisperSettings,
    check_data_settings,
    check_precision_runs_on_accelerator,
    fold_whisper_shortcut,
    require_existing_paths,
)
from nemo_ext.errors import ConfigError
from nemo_ext.manifests import check_manifest
from nemo_ext.recipes.devices import world_size
from nemo_ext.recipes.run_folder import RunFolder
from nemo_ext.reward_models import DEFAULT_NEMO_ASR, DEFAULT_SPEAKER_VERIFICATION

# Keys under which MagpieTTS architectures carry datasets; the recipe rebuilds them from `data`.
_DATASET_KEYS = ("train_ds", "validation_ds", "test_ds")


# exp_manager keys the recipe sets itself from the run folder (see run_folder.py): resuming is `resume=`.
_MANAGED_EXP_MANAGER_KEYS = ("version", "use_datetime_version", "resume_if_exists", "resume_from_checkpoint")


def prepare_config(
    cfg: DictConfig,
    required_paths: Iterable[str],
    manifests: Iterable[str] = (),
    preference_pairs: bool = False,
    absolute_audio_paths: bool = True,
) -> DictConfig:
    """Validate everything that can be validated without building a model (config values, input paths, the
    manifests at the keys `manifests`); return the config with the `+whisper.*` shortcut folded into
    `model.whisper`. Raises ConfigError. `dry_run=true` stops after this, so the SLURM launcher runs it too."""
    cfg = fold_whisper_shortcut(cfg)
    # Resolve once: the model config is cut out of the root config, where ${...} could no longer resolve.
    OmegaConf.resolve(cfg)
    _refuse_secrets(cfg)
    _check_tiny_fixtures(cfg)
    WhisperSettings.from_config(cfg.model.get("whisper"))
    NemoModelSettings.from_config(cfg.model.get("nemo_asr"), "model.nemo_asr", DEFAULT_NEMO_ASR)
    NemoModelSettings.from_config(
        cfg.model.get("speaker_verification"), "model.speaker_verification", DEFAULT_SPEAKER_VERIFICATION
    )
    for key in _MANAGED_EXP_MANAGER_KEYS:
        if cfg.get("exp_manager") is not None and cfg.exp_manager.get(key) not in (None, False):
            raise ConfigError(
                f"exp_manager.{key}",
                cfg.exp_manager[key],
                "unset: the recipe names run folders; continue one with resume=",
            )
    check_data_settings(cfg)
    if cfg.get("trainer") is not None:
        world_size(OmegaConf.to_container(cfg.trainer, resolve=True))  # a `trainer.devices` Lightning refuses
    check_precision_runs_on_accelerator(cfg)  # again in build_model_config, with the architecture known
    require_existing_paths(cfg, required_paths)
    checked = set()
    for key in manifests:
        path = OmegaConf.select(cfg, key)
        if path in checked:
            continue
        checked.add(path)
        summary = check_manifest(
            key,
            path,
            min_duration=cfg.data.get("min_duration"),
            max_duration=cfg.data.get("max_duration"),
            audio_dir=None if absolute_audio_paths else cfg.data.get("audio_dir"),
            preference_pairs=preference_pairs,
        )
        if summary.dropped:
            print(
                f"[magpie] {key}: {summary.dropped} of {summary.lines} lines last outside data.min_duration.."
                f"data.max_duration ({cfg.data.get('min_duration')}..{cfg.data.get('max_duration')}) and are "
                f"skipped; {summary.kept} remain",
                flush=True,
            )
    return cfg


def _check_tiny_fixtures(cfg: DictConfig) -> None:
    """A *_tiny config names its fixture folder (`tiny_root`): missing or built by an older version, say how to
    build it instead of naming the first file it lacks."""
    root = cfg.get("tiny_root")
    if root is None:
        return
    from nemo_ext.tiny_fixtures import FIXTURES_VERSION, built_fixtures_version

    built = built_fixtures_version(root)
    if built != FIXTURES_VERSION:
        state = "not built" if built is None else f"built by version {built}, this code needs {FIXTURES_VERSION}"
        raise ConfigError(
            "tiny_root", root, f"a folder of tiny fixtures ({state}): python scripts/make_tiny_fixtures.py --out {root}"
        )


def _refuse_secrets(cfg: DictConfig) -> None:
    # Hydra writes the composed config to .hydra/config.yaml and NeMo logs it: secrets belong in the environment.
    def walk(node, prefix):
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, f"{path}.")
            elif _looks_secret(str(key)) and value not in (None, ""):
                raise ConfigError(
                    path,
                    "<redacted>",
                    "null here; pass secrets as environment variables "
                    "(WANDB_API_KEY), never in a config that is written to disk",
                )

    walk(OmegaConf.to_container(cfg, resolve=False), "")


def _looks_secret(key: str) -> bool:
    key = key.lower()
    return key in ("token", "key", "secret") or key.endswith(("api_key", "apikey", "_token", "password", "_secret"))


def load_architecture(cfg: DictConfig) -> DictConfig:
    """The MagpieTTS architecture (`model` node): from `model_architecture` (a YAML file holding either the
    model node or a full config with a `model` key), else from the init checkpoint's hyper_parameters."""
    if cfg.get("model_architecture"):
        loaded = OmegaConf.load(cfg.model_architecture)
        architecture = loaded.model if "model" in loaded else loaded
    else:
        with configs_in_checkpoints_allowed():
            checkpoint = torch.load(cfg.init_from_ptl_ckpt, map_location="cpu", mmap=True)
        hyper = checkpoint.get("hyper_parameters") or {}
        if "cfg" not in hyper:
            raise ConfigError(
                "model_architecture",
                None,
                f"a YAML with the model architecture ({cfg.init_from_ptl_ckpt} has no hyper_parameters.cfg)",
            )
        architecture = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(hyper["cfg"])))
    with open_dict(architecture):
        for key in _DATASET_KEYS:
            architecture.pop(key, None)
    return architecture


def dataset_config(cfg: DictConfig, manifest: str, dataset_target: str, shuffle: bool) -> dict:
    data = cfg.data
    return {
        "datasets": {
            "_target_": dataset_target,
            "dataset_meta": {"data": {"manifest_path": manifest, "audio_dir": data.audio_dir}},
            "min_duration": data.min_duration,
            "max_duration": data.max_duration,
        },
        "dataloader_params": {
            "batch_size": data.batch_size,
            "num_workers": data.num_workers,
            "pin_memory": data.get("pin_memory", False),
            "drop_last": False,
            "shuffle": shuffle,
        },
    }


def train_and_validation_datasets(cfg: DictConfig, dataset_target: str) -> dict:
    return {
        "train_ds": dataset_config(cfg, cfg.data.train_manifest, dataset_target, shuffle=True),
        "validation_ds": dataset_config(cfg, cfg.data.val_manifest, dataset_target, shuffle=False),
    }


def build_model_config(cfg: DictConfig, datasets: dict, training: bool = True) -> DictConfig:
    """Architecture + this stage's `model` settings + datasets built from `data`. Raises ConfigError for a
    precision the architecture cannot train in on this accelerator (no model is built yet)."""
    model_cfg = OmegaConf.merge(load_architecture(cfg), cfg.model)
    if training:
        check_precision_runs_on_accelerator(cfg, model_cfg)
    with open_dict(model_cfg):
        if cfg.model.get("optim") is not None:
            # The stage's optimizer replaces the checkpoint's whole: a merge would keep the checkpoint's training
            # scheduler (NeMo's MagpieTTS configs: ExponentialLR, gamma 0.998) under PO's optimizer. PO's default
            # is no scheduler (`model.optim.sched: null`); NeMo's setup_optimization needs the key absent then.
            model_cfg.optim = OmegaConf.create(OmegaConf.to_container(cfg.model.optim, resolve=True))
            if model_cfg.optim.get("sched") is None:
                model_cfg.optim.pop("sched", None)
        model_cfg.codecmodel_path = cfg.codecmodel_path
        for key, value in datasets.items():
            model_cfg[key] = value
    return model_cfg


def trainer_arguments(cfg: DictConfig) -> dict:
    """Lightning Trainer arguments from `trainer`, with the step budget and strategy resolved."""
    trainer_kwargs = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_kwargs.get("strategy", "auto") == "auto" and world_size(trainer_kwargs) > 1:
        # MagpieTTS leaves some parameters (local_transformer*) without gradients in a PO step:
        # plain DDP fails at step 2 (FINDINGS.md).
        trainer_kwargs["strategy"] = "ddp_find_unused_parameters_true"
    if trainer_kwargs.get("max_epochs") is None:
        # A budget in steps alone just works (Lightning's default max_epochs would stop it at an epoch end);
        # with no budget at all, one pass over the data.
        max_steps = trainer_kwargs.get("max_steps")
        trainer_kwargs["max_epochs"] = -1 if max_steps is not None and max_steps > 0 else 1
    # exp_manager adds the loggers and the checkpoint callback itself.
    trainer_kwargs.update(logger=False, enable_checkpointing=False)
    return trainer_kwargs


def build_trainer(cfg: DictConfig, folder: RunFolder, callbacks: list | None = None):
    """A Lightning Trainer from `trainer`, logging and checkpointing set up by NeMo's exp_manager in `folder`."""
    import lightning.pytorch as pl
    from lightning.pytorch.plugins.environments import SLURMEnvironment
    from nemo.utils.exp_manager import exp_manager

    trainer_kwargs = trainer_arguments(cfg)
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
    exp_manager_cfg = OmegaConf.create(OmegaConf.to_container(cfg.get("exp_manager") or {}, resolve=True))
    with open_dict(exp_manager_cfg):
        exp_manager_cfg.version = folder.version
        exp_manager_cfg.use_datetime_version = False
        exp_manager_cfg.resume_if_exists = False  # the run folder picks the checkpoint (run_folder.py)
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


def dry_run_done(cfg: DictConfig, stage: str) -> bool:
    """With `dry_run=true`: print that the (already validated) config is fine and report True: stop here."""
    if not cfg.get("dry_run", False):
        return False
    whisper = WhisperSettings.from_config(cfg.model.get("whisper"))
    rank = os.environ.get("SLURM_PROCID", os.environ.get("RANK", "0"))
    print(
        f"[dry-run] {stage}: config valid, input paths exist; whisper={whisper.pretrained} "
        f"dtype={whisper.dtype} (rank {rank})",
        flush=True,
    )
    return True
