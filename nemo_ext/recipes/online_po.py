"""Online preference optimization (GRPO): `trainer.fit` of MagpieTTSOnlinePO."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, open_dict

from nemo_ext.config import GRPO_LOSS_TYPES, REWARD_ASR_MODELS
from nemo_ext.recipes.setup import (
    build_model_config,
    build_trainer,
    dataset_config,
    finish_loggers,
    is_dry_run,
    prepare_config,
    print_dry_run,
    require_choice,
)
from nemo_ext.telemetry import telemetry_callbacks

DATASET = "nemo.collections.tts.data.text_to_speech_dataset.MagpieTTSDataset"
REQUIRED_PATHS = ("init_from_ptl_ckpt", "codecmodel_path", "data.train_manifest", "data.val_manifest")


@dataclass
class OnlinePORun:
    model: object
    trainer: object
    log_dir: str


def run_online_po(cfg: DictConfig) -> OnlinePORun | None:
    cfg = prepare_config(cfg, REQUIRED_PATHS)
    require_choice(cfg, "model.reward_asr_model", "nemo", REWARD_ASR_MODELS)
    require_choice(cfg, "model.loss_type", "grpo", GRPO_LOSS_TYPES)
    if is_dry_run(cfg):
        print_dry_run(cfg, "online_po")
        return None
    model_cfg = build_model_config(
        cfg,
        {
            "train_ds": dataset_config(cfg, cfg.data.train_manifest, DATASET, shuffle=True),
            "validation_ds": dataset_config(cfg, cfg.data.val_manifest, DATASET, shuffle=False),
        },
    )
    with open_dict(model_cfg):
        # The frozen reference policy is the same checkpoint the policy starts from (upstream's convention).
        model_cfg.reference_model_ckpt_path = cfg.init_from_ptl_ckpt

    from nemo_ext.models import MagpieTTSOnlinePO

    trainer = build_trainer(cfg, callbacks=telemetry_callbacks(cfg))
    model = MagpieTTSOnlinePO(cfg=model_cfg, trainer=trainer)
    model.maybe_init_from_pretrained_checkpoint(cfg=cfg)
    trainer.fit(model)
    finish_loggers(trainer)
    return OnlinePORun(model=model, trainer=trainer, log_dir=trainer.log_dir)
