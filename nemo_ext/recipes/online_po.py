"""Online preference optimization (GRPO): `trainer.fit` of MagpieTTSOnlinePO."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, open_dict

from nemo_ext.config import GRPO_LOSS_TYPES, REFERENCE_POLICY_MODES, REWARD_ASR_MODELS, require_choice
from nemo_ext.errors import ConfigError
from nemo_ext.model_keys import check_model_keys
from nemo_ext.recipes.setup import (
    build_model_config,
    dry_run_done,
    prepare_config,
    train_and_validation_datasets,
)
from nemo_ext.recipes.stage_run import StageRun
from nemo_ext.telemetry import telemetry_callbacks

DATASET = "nemo.collections.tts.data.text_to_speech_dataset.MagpieTTSDataset"
REQUIRED_PATHS = ("init_from_ptl_ckpt", "codecmodel_path", "data.train_manifest", "data.val_manifest")
MANIFESTS = ("data.train_manifest", "data.val_manifest")


@dataclass
class OnlinePORun:
    model: object
    trainer: object
    log_dir: str


def validated_config(cfg: DictConfig) -> DictConfig:
    """The checks that need no model (see prepare_config), GRPO's own values included."""
    cfg = prepare_config(cfg, REQUIRED_PATHS, manifests=MANIFESTS)
    require_choice(cfg, "model.reward_asr_model", "nemo", REWARD_ASR_MODELS)
    require_choice(cfg, "model.loss_type", "grpo", GRPO_LOSS_TYPES)
    require_choice(cfg, "model.reference_policy_mode", "matched", REFERENCE_POLICY_MODES)
    check_model_keys(cfg.model, "online_po")
    if cfg.model.get("use_pesq", False):
        from nemo.collections.tts.models.magpietts_preference_optimization import HAVE_TORCHAUDIO

        if not HAVE_TORCHAUDIO:  # NeMo asserts this only after building the policy and every reward model
            raise ConfigError("model.use_pesq", True, "false (the PESQ reward needs torchaudio, not installed here)")
    return cfg


def model_config(cfg: DictConfig) -> DictConfig:
    """The config the GRPO model is built from (a validated `cfg`): the checkpoint's architecture, this stage's
    `model` node, the datasets, and the reference checkpoint."""
    model_cfg = build_model_config(cfg, train_and_validation_datasets(cfg, DATASET))
    with open_dict(model_cfg):
        # The frozen reference policy is the same checkpoint the policy starts from (upstream's convention).
        model_cfg.reference_model_ckpt_path = cfg.init_from_ptl_ckpt
    return model_cfg


def run_online_po(cfg: DictConfig, callbacks: list | None = None) -> OnlinePORun | None:
    """Run GRPO; `callbacks` are extra Lightning callbacks (programmatic use). None after a dry run."""
    cfg = validated_config(cfg)
    if dry_run_done(cfg, "online_po"):
        return None
    model_cfg = model_config(cfg)

    from nemo_ext.models import MagpieTTSOnlinePO

    callbacks = telemetry_callbacks(cfg) + list(callbacks or [])
    with StageRun(cfg, "online_po") as run:
        model, trainer = run.fit(MagpieTTSOnlinePO, model_cfg, callbacks)
    return OnlinePORun(model=model, trainer=trainer, log_dir=trainer.log_dir)
