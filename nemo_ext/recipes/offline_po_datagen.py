"""Offline PO data generation: `trainer.test` of MagpieTTSOfflinePODataGen, per-item audio + metrics JSON."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass

from omegaconf import DictConfig, open_dict

from nemo_ext.errors import ConfigError
from nemo_ext.recipes.setup import StageRun, build_model_config, dataset_config, dry_run_done, prepare_config
from nemo_ext.telemetry import telemetry_callbacks

DATASET = "nemo.collections.tts.data.text_to_speech_dataset.MagpieTTSDataset"
REQUIRED_PATHS = ("init_from_ptl_ckpt", "codecmodel_path", "data.test_manifest")


@dataclass
class DataGenRun:
    model: object
    trainer: object
    audio_dir: str

    def metrics_files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.audio_dir, "*_metrics.json")))


def resolve_load_whisper(cfg: DictConfig) -> DictConfig:
    """`load_whisper_model: null` means: load Whisper exactly when the language is scored with it (not English)."""
    language = cfg.model.get("pref_set_language", "en")
    with open_dict(cfg):
        if cfg.model.get("load_whisper_model") is None:
            cfg.model.load_whisper_model = language != "en"
    if language != "en" and not cfg.model.load_whisper_model:
        raise ConfigError(
            "model.load_whisper_model", False, f"true or null (pref_set_language={language!r} is scored with Whisper)"
        )
    return cfg


def run_offline_po_datagen(cfg: DictConfig) -> DataGenRun | None:
    cfg = resolve_load_whisper(prepare_config(cfg, REQUIRED_PATHS, manifests=("data.test_manifest",)))
    if dry_run_done(cfg, "offline_po_datagen"):
        return None
    model_cfg = build_model_config(
        cfg, {"test_ds": dataset_config(cfg, cfg.data.test_manifest, DATASET, shuffle=False)}, training=False
    )

    from nemo_ext.models import MagpieTTSOfflinePODataGen

    # DataGen's product is its per-item files; a stop keeps those written so far (nothing to checkpoint).
    with StageRun(cfg, "offline_po_datagen", saves_checkpoints=False) as run:
        model, trainer = run.test(MagpieTTSOfflinePODataGen, model_cfg, telemetry_callbacks(cfg))
    return DataGenRun(model=model, trainer=trainer, audio_dir=model.output_dir())
