"""Offline PO, step 2 of 3: preference pairs from a DataGen run, as manifests NeMo's DPO dataset accepts.

Reads `<datagen run>/audios/*_metrics.json` (each names its `item_id`: the line of DataGen's input manifest it
was generated for) and `<datagen run>/state/items.json` (DataGen's copy of that manifest, with the ids).
Writes to `output_dir` (default `<datagen run>/pairs/`):
- `scored_samples.json`: every sample with its text, context and metrics;
- `dpo_train_manifest.json`, `dpo_val_manifest.json`: chosen / rejected on alternating lines;
- `pair_yield.json`: groups seen, skipped, dropped per rule, pairs kept, chosen and rejected means.
Selection: nemo_ext/pairs.py. Every input problem is a ConfigError raised before any pair is built."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import asdict, dataclass

from nemo_ext.datagen_layout import AUDIO_DIR, CODES_SUFFIX, ITEM_ID_KEY, ITEMS_MANIFEST, METRICS_SUFFIX
from nemo_ext.errors import ConfigError
from nemo_ext.pairs import Pair, PairYield, Sample, select_pairs, split_train_validation


@dataclass
class PairsRun:
    output_dir: str
    train_manifest: str
    val_manifest: str
    scored_manifest: str
    report: PairYield
    train_pairs: int
    val_pairs: int


def read_items(datagen_run: str) -> list[dict]:
    path = os.path.join(datagen_run, ITEMS_MANIFEST)
    if not os.path.isfile(path):
        raise ConfigError(
            "datagen_run", datagen_run, f"a DataGen run folder written by recipes/offline_po_datagen.py (no {path})"
        )
    with open(path) as f:
        items = [json.loads(line) for line in f if line.strip()]
    for index, item in enumerate(items):
        if item.get(ITEM_ID_KEY) != index:
            raise ConfigError("datagen_run", datagen_run, f"{path} with item ids 0..N-1 in order (line {index + 1})")
    return items


def read_samples(datagen_run: str, item_count: int) -> list[Sample]:
    """Every scored sample of the run. Sampler padding (DDP repeats items to even out ranks) can score an item
    twice; the first by file name is kept."""
    audio_dir = os.path.join(datagen_run, AUDIO_DIR)
    metrics_files = sorted(glob.glob(os.path.join(audio_dir, f"*{METRICS_SUFFIX}")))
    if not metrics_files:
        raise ConfigError(
            "datagen_run", datagen_run, f"a DataGen run with scored samples (no *{METRICS_SUFFIX} in {audio_dir})"
        )
    samples = []
    for metrics_file in metrics_files:
        stem = metrics_file[: -len(METRICS_SUFFIX)]
        with open(metrics_file) as f:
            metrics = json.load(f)
        if "item_id" not in metrics:
            raise ConfigError(
                "datagen_run", datagen_run, f"metrics files with an item_id ({metrics_file} has none: rerun DataGen)"
            )
        if not os.path.isfile(f"{stem}.wav"):
            raise ConfigError("datagen_run", datagen_run, f"an audio file for each metrics file (no {stem}.wav)")
        if not 0 <= metrics["item_id"] < item_count:
            raise ConfigError(
                "datagen_run", datagen_run, f"item ids 0..{item_count - 1} ({metrics_file} has {metrics['item_id']})"
            )
        codes = f"{stem}{CODES_SUFFIX}"
        samples.append(
            Sample(
                item_id=int(metrics["item_id"]),
                audio_filepath=f"{stem}.wav",
                codes_path=codes if os.path.isfile(codes) else None,
                cer=float(metrics["cer_gt"]),
                wer=float(metrics["wer_gt"]),
                similarity=float(metrics["spk_similarity"]),
                duration=float(metrics["duration"]),
                pred_transcript=metrics["pred_transcript"],
                gt_transcript=metrics["gt_transcript"],
            )
        )
    return samples


def group_samples(items: list[dict], samples: list[Sample], group_size: int, datagen_run: str) -> list[list[Sample]]:
    """Groups of `group_size` consecutive manifest lines, which repeat one text/context item (how DataGen is fed
    for offline PO); each line has one sample."""
    if len(items) % group_size:
        raise ConfigError(
            "pairs.group_size",
            group_size,
            f"a divisor of the manifest's {len(items)} lines (each item repeated group_size times)",
        )
    by_item: dict[int, Sample] = {}
    for sample in samples:
        by_item.setdefault(sample.item_id, sample)
    missing = [i for i in range(len(items)) if i not in by_item]
    if missing:
        raise ConfigError(
            "datagen_run",
            datagen_run,
            f"a sample for every manifest line ({len(missing)} missing, first line {missing[0] + 1})",
        )
    groups = []
    for start in range(0, len(items), group_size):
        lines = items[start : start + group_size]
        identities = {
            (line.get("text"), line.get("context_audio_filepath"), line.get("context_text")) for line in lines
        }
        if len(identities) != 1:
            raise ConfigError(
                "pairs.group_size",
                group_size,
                f"the size of the manifest's groups: lines {start + 1}..{start + group_size} are not one repeated "
                "text/context item",
            )
        groups.append([by_item[i] for i in range(start, start + group_size)])
    return groups


def _record(item: dict, sample: Sample, use_codes: bool, reward: float | None = None) -> dict:
    """A manifest line for `sample`: its item's text and context, the generated audio and its scores (and the
    DPO `reward` when given)."""
    record = {k: v for k, v in item.items() if k not in (ITEM_ID_KEY, "target_audio_codes_path")}
    record.update(
        audio_filepath=sample.audio_filepath,
        duration=sample.duration,
        cer_gts=sample.cer,
        wer_gts=sample.wer,
        pred_context_similarity=sample.similarity,
        pred_transcript=sample.pred_transcript,
        gt_transcript=sample.gt_transcript,
    )
    if reward is not None:
        record["reward"] = reward
    if use_codes and sample.codes_path:
        record["target_audio_codes_path"] = sample.codes_path
    return record


def _write(path: str, rows: list[dict]) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def _pair_lines(pairs: list[Pair], items: list[dict], use_codes: bool) -> list[dict]:
    lines = []
    for pair in pairs:
        lines.append(_record(items[pair.chosen.item_id], pair.chosen, use_codes, reward=1.0))
        lines.append(_record(items[pair.rejected.item_id], pair.rejected, use_codes, reward=pair.rejected_reward))
    return lines


def make_pairs(settings, callbacks: list | None = None) -> PairsRun:
    """The pair stage's loop (its settings: nemo_ext/settings/pairs.py::PairStageSettings)."""
    stage = settings.algorithm
    datagen_run = stage.datagen_run
    items = read_items(datagen_run)
    samples = read_samples(datagen_run, len(items))
    groups = group_samples(items, samples, stage.pairs.group_size, datagen_run)

    pairs, report = select_pairs(groups, stage.pairs)
    train, validation = split_train_validation(pairs, stage.pairs)
    output_dir = os.path.abspath(stage.output_dir or os.path.join(datagen_run, "pairs"))
    os.makedirs(output_dir, exist_ok=True)
    run = PairsRun(
        output_dir=output_dir,
        train_manifest=os.path.join(output_dir, "dpo_train_manifest.json"),
        val_manifest=os.path.join(output_dir, "dpo_val_manifest.json"),
        scored_manifest=os.path.join(output_dir, "scored_samples.json"),
        report=report,
        train_pairs=len(train),
        val_pairs=len(validation),
    )
    scored = [_record(items[s.item_id], s, stage.use_codes) | {"item_id": s.item_id} for g in groups for s in g]
    _write(run.scored_manifest, scored)
    _write(run.train_manifest, _pair_lines(train, items, stage.use_codes))
    _write(run.val_manifest, _pair_lines(validation, items, stage.use_codes))
    summary = {
        **report.as_dict(),
        "train_pairs": run.train_pairs,
        "val_pairs": run.val_pairs,
        "settings": asdict(stage.pairs),
    }
    with open(os.path.join(output_dir, "pair_yield.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(format_yield(report, run), flush=True)
    _log_to_wandb(stage.wandb, output_dir, summary)
    return run


def format_yield(report: PairYield, run: PairsRun) -> str:
    dropped = ", ".join(f"{rule} {count}" for rule, count in sorted(report.dropped.items())) or "none"
    return (
        f"[magpie] pair yield: {report.groups} groups, {report.skipped_invalid} skipped (<INVALID>), "
        f"{report.candidate_pairs} candidate pairs, dropped: {dropped}; kept {report.kept} "
        f"({run.train_pairs} train, {run.val_pairs} validation). Means chosen/rejected: CER "
        f"{report.chosen_cer_mean:.4g}/{report.rejected_cer_mean:.4g}, similarity "
        f"{report.chosen_similarity_mean:.4g}/{report.rejected_similarity_mean:.4g}\n"
        f"[magpie] pairs written: data.train_manifest={run.train_manifest} data.val_manifest={run.val_manifest}"
    )


def _log_to_wandb(settings, output_dir: str, summary: dict) -> None:
    if not settings.enabled:
        return
    import wandb

    run = wandb.init(
        project=settings.project,
        name=settings.name,
        dir=settings.save_dir or os.path.dirname(output_dir) or None,
        mode="offline" if settings.offline else None,
        config=summary["settings"],
        job_type="offline_po_pairs",
    )
    run.log({f"pairs/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    run.finish()
    wandb.teardown()
