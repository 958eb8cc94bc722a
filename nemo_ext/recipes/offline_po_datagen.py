"""DataGen's loop: `trainer.test` of MagpieTTSOfflinePODataGen over the manifest lines that have no complete sample
yet, so a resumed or requeued run generates only what is missing (files in nemo_ext/datagen_layout.py)."""

from __future__ import annotations

import glob
import json
import os
import time

from nemo_ext.datagen_layout import AUDIO_DIR, ITEM_ID_KEY, ITEMS_MANIFEST, METRICS_SUFFIX
from nemo_ext.recipes.run_stage import StageResult


def write_items_manifest(manifest: str, folder) -> str:
    """DataGen's own copy of the input manifest, each line with its index (ITEM_ID_KEY): the id written into
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


def items_still_to_generate(folder, rank: int) -> tuple[str, int]:
    """(manifest of the items without a complete sample, how many are complete). A sample is complete once its
    metrics file exists (written last, atomically). The first attempt writes everything; a resumed or requeued
    one only what is missing. Ranks decide alike: they read the same files, which no rank writes until the
    test loop starts. Each global rank writes its own copy (`rank`), atomically."""
    items = os.path.join(folder.path, ITEMS_MANIFEST)
    done = set()
    for path in glob.glob(os.path.join(folder.path, AUDIO_DIR, f"*{METRICS_SUFFIX}")):
        with open(path) as f:
            done.add(json.load(f).get("item_id"))
    if not done:
        return items, 0
    todo = os.path.join(folder.path, "state", f"items_todo_rank{rank}.json")
    temporary = f"{todo}.{os.getpid()}.tmp"
    with open(items) as source, open(temporary, "w") as target:
        for line in source:
            if line.strip() and json.loads(line)[ITEM_ID_KEY] not in done:
                target.write(line)
    os.replace(temporary, todo)
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


def generate(settings, callbacks: list) -> StageResult:
    from nemo_ext.recipes.model_config import stage_model_config
    from nemo_ext.recipes.run_stage import import_object
    from nemo_ext.recipes.stage_run import StageRun
    from nemo_ext.telemetry import telemetry_callbacks

    model_class = import_object(settings.stage.model_class)
    # DataGen's product is its per-item files; a stop keeps those written so far (nothing to checkpoint).
    with StageRun(settings, saves_checkpoints=False) as run:
        write_items_manifest(settings.data.manifest("test_manifest"), run.folder)
        todo, done = items_still_to_generate(run.folder, run.rank)
        audio_dir = os.path.join(run.folder.path, AUDIO_DIR)
        if done:
            print(f"[magpie] {done} items already complete in {run.folder.path}; generating the rest", flush=True)
            if not _has_lines(todo):
                return StageResult(settings, run.folder.path, audio_dir=audio_dir)
        model_cfg = stage_model_config(settings, test_manifest=todo)
        model, trainer = run.test(model_class, model_cfg, telemetry_callbacks(settings) + list(callbacks))
    if run.folder.owner:
        print(f"[magpie] next: python recipes/offline_po_pairs.py datagen_run={run.folder.path}", flush=True)
    return StageResult(
        settings, run.folder.path, model=model, trainer=trainer, log_dir=trainer.log_dir, audio_dir=model.output_dir()
    )
