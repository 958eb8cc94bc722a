"""GRPO steps at the published size with the three rollout decoders (`model.rollout_decoder`: NeMo's default
uncached `infer_batch`, NeMo's KV cache, ours) at several rollout lengths, in one run, interleaved per length.

One recipe run (conf/benchmarks/online_po_published.yaml: the real Lightning Trainer and telemetry, Whisper base in
fp32). The first step is warm-up (first calls, allocations) and left out; then, for each length, one step per
decoder. End-of-speech is forbidden until the length (`min_generated_frames`, read by NeMo's loop and ours alike),
so every rollout of every decoder runs exactly that many frames (the decoders' random draws differ, and random
weights do emit the end token now and then); the frames each step decoded are recorded, and the generation time per
frame is the phase's seconds over them. After the steps: DataGen's generation of one
item (what `infer_batch` costs DataGen per item, NeMo's default uncached decoder against ours), on the same model."""

from __future__ import annotations

import json
import os
import time

import torch
from lightning.pytorch import Callback

from nemo_ext.settings.rollout_decoder import INCREMENTAL, NEMO, NEMO_CACHED
from nemo_ext.telemetry import phases
from nemo_ext_tools.grpo_step_benchmark import REPO, _machine, published_run

DECODERS = (NEMO, NEMO_CACHED, INCREMENTAL)
NAMES = {NEMO: "NeMo 3.0.0 (uncached)", NEMO_CACHED: "NeMo's KV cache", INCREMENTAL: "ours (incremental)"}


class DecoderSchedule(Callback):
    """Step 0: warm-up; then step k runs `schedule[k - 1]`, a (length, decoder) pair."""

    def __init__(self, lengths: tuple[int, ...], datagen_frames: int):
        self.schedule = [(None, INCREMENTAL)] + [(n, d) for n in lengths for d in DECODERS]
        self.lengths, self.datagen_frames = lengths, datagen_frames
        self.datagen: dict[str, float] = {}
        self.frames: list[int | None] = []  # decoding steps each training step ran
        self._batch = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        length, decoder = self.schedule[trainer.global_step]
        pl_module.rollout_decoder = decoder
        pl_module.max_decoder_steps = length or self.lengths[0]
        pl_module.inference_parameters.min_generated_frames = pl_module.max_decoder_steps  # no early end
        self._batch = batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.frames.append(getattr(pl_module, "last_rollout_steps", None))

    def on_train_end(self, trainer, pl_module):
        """DataGen's generation of one item: NeMo's default (uncached `infer_batch`) against ours."""
        pl_module.eval()
        params = pl_module.inference_parameters
        params.max_decoder_steps = params.min_generated_frames = self.datagen_frames
        for decoder in (NEMO, INCREMENTAL, NEMO, INCREMENTAL):  # each twice, the first of each left out
            pl_module.rollout_decoder = decoder
            torch.manual_seed(0)
            started = time.perf_counter()
            pl_module.infer_batch(self._batch, use_cfg=False)
            self.datagen[decoder] = time.perf_counter() - started


def run(lengths: tuple[int, ...], datagen_frames: int, accelerator: str, out: str, command: str) -> str:
    started = time.perf_counter()
    root = os.environ.get("MAGPIE_PUBLISHED_ROOT", os.path.join(REPO, ".published"))
    with open(os.path.join(root, "published_fixtures.json")) as f:
        fixtures = json.load(f)
    schedule = DecoderSchedule(lengths, datagen_frames)
    with published_run(len(schedule.schedule), lengths[0], accelerator, [schedule]) as (cfg, result):
        with open(os.path.join(result.log_dir, "memory", "rank0.jsonl")) as f:
            rows = {int(row["step"]): row for row in map(json.loads, f) if "time/step_s" in row}
    measured = []
    for index, (length, decoder) in enumerate(schedule.schedule):
        if index == 0:
            continue  # warm-up
        row = rows[index + 1]  # the telemetry numbers a step by the optimizer steps taken after it
        measured.append(
            {
                "frames": length,
                "decoder": decoder,
                "frames_decoded": schedule.frames[index],
                "generation_s": row[f"time/{phases.GENERATION}_s"],
                "step_s": row["time/step_s"],
                "phases_s": {
                    k[len("time/") : -len("_s")]: v
                    for k, v in row.items()
                    if k.startswith("time/") and k.endswith("_s")
                },
            }
        )
    context = {
        "command": command,
        "machine": _machine(accelerator),
        "model": f"MagpieTTS of the published magpietts.yaml, {fixtures['policy_param_count'] / 1e6:.0f} M trainable "
        "parameters, random weights (nemo_ext_tools/published_fixtures.py); Whisper base, multilingual, fp32",
        "batch_size": cfg.data.batch_size,
        "n_generations": cfg.model.n_generations_per_item,
        "wall_seconds": time.perf_counter() - started,
        "datagen_frames": datagen_frames,
    }
    figures = {"context": context, "measured": measured, "datagen_seconds_per_item": schedule.datagen}
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(figures, f, indent=1)
    return write_report(figures, out)


def write_report(figures: dict, out: str) -> str:
    text = report(figures)
    with open(out, "w") as f:
        f.write(text)
    return text


def render(figures_json: str, out: str) -> str:
    """The markdown again from a run's JSON (nothing measured)."""
    with open(figures_json) as f:
        return write_report(json.load(f), out)


def report(figures: dict) -> str:
    context, measured = figures["context"], figures["measured"]
    at = {(m["frames"], m["decoder"]): m for m in measured}
    lengths = sorted({m["frames"] for m in measured})
    lines = [
        "# Rollout decoders at the published size: NeMo's uncached, NeMo's KV cache, ours",
        "",
        f"Command: `{context['command']}`",
        "",
        f"Machine: {context['machine']}. Model: {context['model']}. Rollouts: batch of {context['batch_size']} text x "
        f"{context['n_generations']} generations; end-of-speech forbidden until the length (`min_generated_frames`), "
        "so "
        "every rollout runs exactly the frames given (decoded: the decoding steps the step ran, from the decoder's "
        "own count). One GRPO step per decoder and length, interleaved in one run after one warm-up step. "
        f"Total run {context['wall_seconds']:.0f} s.",
        "",
        "## Seconds per GRPO step",
        "",
        "| frames | decoder | decoded | generation | whole step | generation per frame, ms | generation speed-up "
        "| step speed-up |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for length in lengths:
        nemo = at[(length, NEMO)]
        for decoder in DECODERS:
            m = at[(length, decoder)]
            lines.append(
                f"| {length} | {NAMES[decoder]} | {m.get('frames_decoded')} | {m['generation_s']:.2f} | "
                f"{m['step_s']:.2f} | "
                f"{1000 * m['generation_s'] / length:.0f} | {nemo['generation_s'] / m['generation_s']:.2f}x | "
                f"{nemo['step_s'] / m['step_s']:.2f}x |"
            )
    lines += phase_lines(measured, lengths)
    datagen = figures["datagen_seconds_per_item"]
    lines += [
        "",
        f"## DataGen: generation of one item ({context['datagen_frames']} frames)",
        "",
        "| decoder | seconds per item |",
        "|---|---:|",
        f"| {NAMES[NEMO]} | {datagen[NEMO]:.2f} |",
        f"| {NAMES[INCREMENTAL]} | {datagen[INCREMENTAL]:.2f} |",
        "",
        f"Speed-up: {datagen[NEMO] / datagen[INCREMENTAL]:.2f}x. The item's ASR and speaker verification are the "
        "same with either decoder (the GRPO table's other phases).",
        "",
        "## Targets (this machine)",
        "",
        *targets(at),
    ]
    return "\n".join(lines) + "\n"


def phase_lines(measured: list[dict], lengths: list[int]) -> list[str]:
    """Where each step's seconds went (the step anatomy's phases), the longest phase of ours named per length."""
    if not all("phases_s" in m for m in measured):
        return []
    names = [name for name in measured[0]["phases_s"] if name != "step"]
    names = [name for name in names if any(m["phases_s"].get(name, 0.0) >= 0.1 for m in measured)]
    lines = [
        "",
        "## Seconds per phase (phases under 0.1 s in every step left out)",
        "",
        "| frames | decoder | " + " | ".join(names) + " |",
        "|---:|---|" + "---:|" * len(names),
    ]
    for m in measured:
        cells = " | ".join(f"{m['phases_s'].get(name, 0.0):.2f}" for name in names)
        lines.append(f"| {m['frames']} | {NAMES[m['decoder']]} | {cells} |")
    lines.append("")
    for length in lengths:
        ours = next(m for m in measured if m["frames"] == length and m["decoder"] == INCREMENTAL)
        rest = {name: ours["phases_s"].get(name, 0.0) for name in names if name != "generation"}
        longest = max(rest, key=rest.get)
        share = ours["phases_s"]["generation"] / ours["step_s"]
        lines.append(
            f"- {length} frames, ours: generation {100 * share:.0f}% of the step; the longest other phase is "
            f"`{longest}` ({rest[longest]:.2f} s)."
        )
    return lines


def targets(at: dict) -> list[str]:
    def ratio(length, decoder, key):
        if (length, decoder) not in at or (length, NEMO) not in at:
            return None
        return at[(length, NEMO)][key] / at[(length, decoder)][key]

    goals = [
        ("generation at 96 frames against NeMo's default", 96, NEMO, "generation_s", 5.0),
        ("generation at 96 frames against NeMo's cache", 96, NEMO_CACHED, "generation_s", 3.0),
        ("generation at 192 frames against NeMo's default", 192, NEMO, "generation_s", 8.0),
        ("whole step at 96 frames against NeMo's default", 96, NEMO, "step_s", 3.0),
    ]
    lines = []
    for what, length, baseline, key, goal in goals:
        ours = at.get((length, INCREMENTAL))
        base = at.get((length, baseline))
        if ours is None or base is None:
            lines.append(f"- {what}: not measured in this run")
            continue
        got = base[key] / ours[key]
        verdict = "met" if got >= goal else f"missed by {goal / got:.2f}x{_dominant_phase(ours)}"
        lines.append(f"- {what}: {got:.2f}x (target {goal:g}x): {verdict}")
    return lines


def _dominant_phase(measured: dict) -> str:
    """Where our step's seconds went, for a missed target: its longest phase."""
    phases = {name: seconds for name, seconds in measured.get("phases_s", {}).items() if name != "step"}
    if not phases:
        return ""
    longest = max(phases, key=phases.get)
    return (
        f"; ours is dominated by `{longest}` ({phases[longest]:.2f} s of {measured['step_s']:.2f} s; "
        f"generation {1000 * measured['generation_s'] / measured['frames']:.0f} ms per frame)"
    )
