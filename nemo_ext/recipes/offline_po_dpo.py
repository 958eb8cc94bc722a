"""Offline preference optimization (DPO/IPO/RPO on chosen-rejected pairs): `trainer.fit` of NeMo's
MagpieTTSModelOfflinePO. This stage loads no ASR model; `whisper` settings are accepted (so one set of launcher
overrides serves every stage) and validated, but unused."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, open_dict

from nemo_ext.config import DPO_LOSS_TYPES
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

DATASET = "nemo.collections.tts.data.text_to_speech_dataset.MagpieTTSDatasetDPO"
REQUIRED_PATHS = ("init_from_ptl_ckpt", "codecmodel_path", "data.train_manifest", "data.val_manifest")


@dataclass
class DPORun:
    model: object
    trainer: object


def run_offline_po_dpo(cfg: DictConfig) -> DPORun | None:
    cfg = prepare_config(cfg, REQUIRED_PATHS)
    require_choice(cfg, "model.dpo_loss_type", "dpo", DPO_LOSS_TYPES)
    if is_dry_run(cfg):
        print_dry_run(cfg, "offline_po_dpo")
        return None
    model_cfg = build_model_config(
        cfg,
        {
            "train_ds": dataset_config(cfg, cfg.data.train_manifest, DATASET, shuffle=True),
            "validation_ds": dataset_config(cfg, cfg.data.val_manifest, DATASET, shuffle=False),
        },
    )
    with open_dict(model_cfg):
        model_cfg.reference_model_ckpt_path = cfg.init_from_ptl_ckpt
        for unused in ("whisper", "nemo_asr", "speaker_verification"):
            model_cfg.pop(unused, None)

    from nemo.collections.tts.models.magpietts_preference_optimization import MagpieTTSModelOfflinePO

    trainer = build_trainer(cfg)
    model = MagpieTTSModelOfflinePO(cfg=model_cfg, trainer=trainer)
    model.maybe_init_from_pretrained_checkpoint(cfg=cfg)
    trainer.fit(model)
    finish_loggers(trainer)
    return DPORun(model=model, trainer=trainer)
