"""Offline PO data generation: `trainer.test` of MagpieTTSOfflinePODataGen, per-item audio + metrics JSON."""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass

from omegaconf import DictConfig, open_dict

from nemo_ext.errors import ConfigError
from nemo_ext.model_keys import check_model_keys
from nemo_ext.pairs import ITEM_ID_KEY
from nemo_ext.recipes.offline_po_pairs import ITEMS_MANIFEST
from nemo_ext.recipes.setup import build_model_config, dataset_config, dry_run_done, prepare_config
from nemo_ext.recipes.stage_run import StageRun
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


def write_items_manifest(manifest: str, folder) -> str:
    """DataGen's own copy of the input manifest, each line with its index (`magpie_item_id`): the id written into
    every metrics file, by which the pair stage finds a sample's text and group. Only rank 0 writes it (once per
    run folder: a resumed run keeps the ids); the other ranks read the same path."""
    path = os.path.join(folder.path, ITEMS_MANIFEST)
    if folder.owner and not os.path.isfile(path):
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(manifest) as source, open(temporary, "w") as copy:
            rows = [json.loads(line) for line in source if line.strip()]
            copy.writelines(json.dumps({**row, ITEM_ID_KEY: index}) + "\n" for index, row in enumerate(rows))
        os.replace(temporary, path)
    else:
        _wait_for(path)
    return path


def items_still_to_generate(folder) -> tuple[str, int]:
    """(manifest of the items without a complete sample, how many are complete). A sample is complete once its
    metrics file exists (written last, atomically). The first attempt writes everything; a resumed or requeued
    one only what is missing. Ranks decide alike: they read the same files, which no rank writes until the
    test loop starts."""
    items = os.path.join(folder.path, ITEMS_MANIFEST)
    done = set()
    for path in glob.glob(os.path.join(folder.path, "audios", "*_metrics.json")):
        with open(path) as f:
            done.add(json.load(f).get("item_id"))
    if not done:
        return items, 0
    todo = os.path.join(folder.path, "state", f"items_todo_rank{os.environ.get('SLURM_PROCID', '0')}.json")
    with open(items) as source, open(todo, "w") as target:
        for line in source:
            if line.strip() and json.loads(line)[ITEM_ID_KEY] not in done:
                target.write(line)
    return todo, len(done)


def _has_lines(path: str) -> bool:
    with open(path) as f:
        return any(line.strip() for line in f)


def _wait_for(path: str, seconds: float = 300.0) -> None:
    deadline = time.monotonic() + seconds
    while not os.path.isfile(path):
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"rank 0 did not write {path} within {seconds:.0f} s")
        time.sleep(0.2)


def validated_config(cfg: DictConfig) -> DictConfig:
    cfg = resolve_load_whisper(prepare_config(cfg, REQUIRED_PATHS, manifests=("data.test_manifest",)))
    check_model_keys(cfg.model, "offline_po_datagen")
    return cfg


def model_config(cfg: DictConfig, manifest: str) -> DictConfig:
    """The config the DataGen model is built from (a validated `cfg`), generating for the lines of `manifest`."""
    return build_model_config(cfg, {"test_ds": dataset_config(cfg, manifest, DATASET, shuffle=False)}, training=False)


def run_offline_po_datagen(cfg: DictConfig) -> DataGenRun | None:
    cfg = validated_config(cfg)
    if dry_run_done(cfg, "offline_po_datagen"):
        return None
    from nemo_ext.models import MagpieTTSOfflinePODataGen

    # DataGen's product is its per-item files; a stop keeps those written so far (nothing to checkpoint).
    with StageRun(cfg, "offline_po_datagen", saves_checkpoints=False) as run:
        write_items_manifest(cfg.data.test_manifest, run.folder)
        todo, done = items_still_to_generate(run.folder)
        audio_dir = os.path.join(run.folder.path, "audios")
        if done:
            print(f"[magpie] {done} items already complete in {run.folder.path}; generating the rest", flush=True)
            if not _has_lines(todo):
                return DataGenRun(model=None, trainer=None, audio_dir=audio_dir)
        model_cfg = model_config(cfg, todo)
        model, trainer = run.test(MagpieTTSOfflinePODataGen, model_cfg, telemetry_callbacks(cfg))
    if run.folder.owner:
        print(f"[magpie] next: python recipes/offline_po_pairs.py datagen_run={run.folder.path}", flush=True)
    return DataGenRun(model=model, trainer=trainer, audio_dir=model.output_dir())
