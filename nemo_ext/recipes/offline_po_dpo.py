"""Offline preference optimization, step 3 of 3: DPO / IPO / RPO on chosen-rejected pairs, `trainer.fit` of NeMo's
MagpieTTSModelOfflinePO (nemo_ext.models.MagpieTTSOfflinePO: cached int16 codes widened on load).

This stage loads no ASR model; `whisper` settings are accepted (so one set of launcher overrides serves every
stage) and validated, but unused."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, open_dict

from nemo_ext.config import DPO_LOSS_TYPES, require_choice
from nemo_ext.model_keys import check_model_keys
from nemo_ext.recipes.setup import (
    build_model_config,
    dry_run_done,
    prepare_config,
    train_and_validation_datasets,
)
from nemo_ext.recipes.stage_run import StageRun

DATASET = "nemo.collections.tts.data.text_to_speech_dataset.MagpieTTSDatasetDPO"
REQUIRED_PATHS = ("init_from_ptl_ckpt", "codecmodel_path", "data.train_manifest", "data.val_manifest")
MANIFESTS = ("data.train_manifest", "data.val_manifest")


@dataclass
class DPORun:
    model: object
    trainer: object


def validated_config(cfg: DictConfig) -> DictConfig:
    # DPO reads audio through NeMo's dataset, which joins relative paths with data.audio_dir.
    cfg = prepare_config(cfg, REQUIRED_PATHS, manifests=MANIFESTS, preference_pairs=True, absolute_audio_paths=False)
    require_choice(cfg, "model.dpo_loss_type", "dpo", DPO_LOSS_TYPES)
    check_model_keys(cfg.model, "offline_po_dpo")
    return cfg


def model_config(cfg: DictConfig) -> DictConfig:
    """The config the DPO model is built from (a validated `cfg`)."""
    model_cfg = build_model_config(cfg, train_and_validation_datasets(cfg, DATASET))
    with open_dict(model_cfg):
        model_cfg.reference_model_ckpt_path = cfg.init_from_ptl_ckpt
        for unused in ("whisper", "nemo_asr", "speaker_verification"):
            model_cfg.pop(unused, None)
    return model_cfg


def run_offline_po_dpo(cfg: DictConfig) -> DPORun | None:
    cfg = validated_config(cfg)
    if dry_run_done(cfg, "offline_po_dpo"):
        return None
    model_cfg = model_config(cfg)

    from nemo_ext.models import MagpieTTSOfflinePO

    with StageRun(cfg, "offline_po_dpo") as run:
        model, trainer = run.fit(MagpieTTSOfflinePO, model_cfg, callbacks=[])
    return DPORun(model=model, trainer=trainer)
