"""One GRPO step at the published size, NeMo 3.0.0's defaults against ours, lever by lever, in one process.

One recipe run (conf/benchmarks/online_po_published.yaml, the real Lightning Trainer and telemetry) whose steps
cycle through the variants: NeMo's defaults, each lever alone, all levers together. Every variant runs on the same
model and the same data, interleaved, so drift of the machine or of the weights falls on all of them alike. The
first cycle is warm-up (first calls, allocations) and left out. Per step: the telemetry's phase seconds (and CUDA
peaks on a GPU), and the step's peak RSS (the kernel's high-water mark, reset at the step's start: every
variant's models are resident in this one process, so the figure shows what a step adds on top of them).

Before the timed steps, the KV-cache rollouts are compared with NeMo's at this size: the same seed, the same
weights, greedy and sampled."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
from lightning.pytorch import Callback

from nemo_ext.telemetry import phases

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Variant:
    name: str
    kv_cache: bool  # model.use_kv_cache_during_online_po
    whisper: str  # "transformers fp32" | "ctranslate2 int8"
    empty_cache: bool = True  # model.empty_cuda_cache_every_step (a no-op without CUDA: GPU runs only)
    rollout_decoder: str = "nemo"  # model.rollout_decoder: NeMo's infer_batch, its cache as `kv_cache` sets it

    @property
    def on_ctranslate2(self) -> bool:
        return self.whisper.startswith("ctranslate2")


NEMO = Variant("NeMo 3.0.0 defaults", kv_cache=False, whisper="transformers fp32")
KV_CACHE = Variant("KV-cache rollouts", kv_cache=True, whisper="transformers fp32")
CT2_INT8 = Variant("CTranslate2 int8 Whisper", kv_cache=False, whisper="ctranslate2 int8")
KEEP_CUDA_CACHE = Variant("no per-step empty_cache", kv_cache=False, whisper="transformers fp32", empty_cache=False)
OURS = Variant("ours (all levers)", kv_cache=True, whisper="ctranslate2 int8", rollout_decoder="incremental")
OURS_GPU = Variant(
    "ours (all levers)", kv_cache=True, whisper="ctranslate2 int8", empty_cache=False, rollout_decoder="incremental"
)
VARIANTS = (NEMO, KV_CACHE, CT2_INT8, OURS)
GPU_VARIANTS = (NEMO, KV_CACHE, CT2_INT8, KEEP_CUDA_CACHE, OURS_GPU)
ROLLOUT = (phases.GENERATION, phases.CODEC_DECODE, phases.AUDIO_IO, phases.ASR, phases.SPEAKER_VERIFICATION)


def reset_peak_rss() -> bool:
    """Reset the process's RSS high-water mark (Linux: 5 > /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class Alternation(Callback):
    """Step i runs VARIANTS[i % len(VARIANTS)]; records the variant and the step's peak RSS. `equivalence`: before
    the first step, the KV-cache rollouts against NeMo's (seeded, greedy and sampled)."""

    def __init__(self, ct2_whisper: str, equivalence: bool = True, variants: tuple[Variant, ...] = VARIANTS):
        self.ct2_whisper, self.equivalence, self.variants = ct2_whisper, equivalence, variants
        self.steps: list[dict] = []
        self.kv_check: dict = {}
        self._pairs: dict[str, tuple] = {}

    def on_train_start(self, trainer, pl_module):
        from nemo_ext.whisper_ct2 import load_ct2_whisper

        device = str(trainer.strategy.root_device)
        started = time.perf_counter()
        ct2 = load_ct2_whisper(self.ct2_whisper, "int8", device)
        self.ct2_load = {"seconds": time.perf_counter() - started, "bytes": ct2[1].loaded_bytes}
        self._pairs = {"transformers fp32": (pl_module.whisper_processor, pl_module.whisper_model), "ctranslate2": ct2}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        from omegaconf import open_dict

        if self.equivalence and not self.kv_check:
            self.kv_check = kv_cache_equivalence(pl_module, batch)
        variant = self.variants[trainer.global_step % len(self.variants)]
        with open_dict(pl_module.cfg):
            pl_module.cfg.use_kv_cache_during_online_po = variant.kv_cache
        pl_module.rollout_decoder = variant.rollout_decoder
        pl_module.settings = dataclasses.replace(
            pl_module.settings,
            empty_cuda_cache_every_step=variant.empty_cache,
            use_kv_cache_during_online_po=variant.kv_cache,
        )
        pl_module.use_whisper(*self._pairs["ctranslate2" if variant.on_ctranslate2 else "transformers fp32"])
        # End-of-speech forbidden until max_decoder_steps (read by NeMo's loop and ours alike): random weights do
        # emit the end token now and then, and the variants' draws differ, so rollouts would otherwise end at
        # different lengths.
        pl_module.inference_parameters.min_generated_frames = pl_module.max_decoder_steps
        self._current = {"step": trainer.global_step + 1, "variant": variant.name, "rss_reset": reset_peak_rss()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        frames = getattr(pl_module, "last_rollout_steps", None)
        self.steps.append({**self._current, "peak_rss_bytes": peak_rss_bytes(), "frames_decoded": frames})


def kv_cache_equivalence(model, batch) -> dict:
    """Rollout codes with and without the decoder's KV cache, from the same seed and weights: greedy (top-k 1) and
    sampled (the config's top-k and temperature). Returns, per decoding, rollouts compared and rollouts differing."""
    result = {}
    model.rollout_decoder = "nemo"  # NeMo's infer_batch, with and without its cache
    n = model.cfg.get("n_generations_per_item", 6)
    settings = model.settings
    for decoding, k in (("greedy", 1), ("sampled", settings.inference_topk)):
        codes = {}
        for cache in (False, True):
            model.settings = dataclasses.replace(settings, inference_topk=k)  # the step reads its typed settings
            model.use_kv_cache_for_inference = cache
            model.decoder.reset_cache(use_cache=cache)
            torch.manual_seed(2026)
            started = time.perf_counter()
            with torch.no_grad():
                model.eval()
                output = model.generate_and_reward(batch, n, mode="train")
                model.train()
            model.use_kv_cache_for_inference = False
            model.decoder.reset_cache(use_cache=False)
            lengths = output["predicted_codes_lens"].cpu()
            codes[cache] = (
                [output["predicted_codes"][i, :, : lengths[i]].cpu() for i in range(len(lengths))],
                time.perf_counter() - started,
            )
        model.settings = settings
        (without, seconds_without), (with_cache, seconds_with) = codes[False], codes[True]
        pairs = list(zip(without, with_cache, strict=True))
        differing = sum(not torch.equal(a, b) for a, b in pairs)
        result[decoding] = {
            "rollouts": len(without),
            "differing": differing,
            # Where a differing rollout first differs: identical codes up to there, then a different draw.
            "first_differing_frames": [_first_difference(a, b) for a, b in pairs if not torch.equal(a, b)],
            "frames": [int(c.shape[-1]) for c in without],
            "seconds_without_cache": round(seconds_without, 2),
            "seconds_with_cache": round(seconds_with, 2),
        }
    return result


def _first_difference(a: torch.Tensor, b: torch.Tensor) -> int:
    frames = min(a.shape[-1], b.shape[-1])
    unequal = (a[:, :frames] != b[:, :frames]).any(dim=0).nonzero()
    return int(unequal[0]) if len(unequal) else frames


@dataclass
class Measured:
    variant: str
    steps: list[int]
    phase_seconds: dict[str, float]  # median over the measured steps
    step_seconds: float
    peak_rss_gb: float | None
    cuda_peaks_gb: dict[str, float]


def summarize(
    alternation_steps: list[dict], rank_rows: list[dict], variants: tuple[Variant, ...], warmup_cycles: int = 1
) -> list[Measured]:
    by_step = {int(row["step"]): row for row in rank_rows if "time/step_s" in row}
    skip = warmup_cycles * len(variants)
    measured = []
    for variant in variants:
        rows = [
            (record, by_step[record["step"]])
            for record in alternation_steps[skip:]
            if record["variant"] == variant.name and record["step"] in by_step
        ]
        if not rows:
            continue
        phase_names = [key[len("time/") : -len("_s")] for key in rows[0][1] if key.startswith("time/")]
        phase_names = [name for name in phase_names if name != "step"]
        peaks = [r["peak_rss_bytes"] for r, _ in rows if r["peak_rss_bytes"] and r["rss_reset"]]
        cuda = sorted({key for _, row in rows for key in row if key.startswith("gpu/") and "peak" in key})
        measured.append(
            Measured(
                variant=variant.name,
                steps=[r["step"] for r, _ in rows],
                phase_seconds={
                    name: statistics.median(row[f"time/{name}_s"] for _, row in rows) for name in phase_names
                },
                step_seconds=statistics.median(row["time/step_s"] for _, row in rows),
                peak_rss_gb=max(peaks) / 1e9 if peaks else None,
                cuda_peaks_gb={key: max(row.get(key, 0.0) for _, row in rows) for key in cuda},
            )
        )
    return measured


def rollout_seconds(m: Measured) -> float:
    return sum(m.phase_seconds.get(name, 0.0) for name in ROLLOUT)


def report(measured: list[Measured], context: dict) -> str:
    nemo = next(m for m in measured if m.variant == NEMO.name)
    phase_names = list(nemo.phase_seconds)
    lines = [
        "# A GRPO step at the published size: NeMo 3.0.0's defaults against ours",
        "",
        f"Command: `{context['command']}`",
        "",
        f"Machine: {context['machine']}. Model: {context['model']}. Rollouts: batch of {context['batch_size']} "
        f"text x {context['n_generations']} generations, max_decoder_steps={context['max_decoder_steps']} "
        "(end-of-speech forbidden until then, `min_generated_frames`: every rollout of every variant runs to "
        "max_decoder_steps; "
        f"frames each measured step decoded: {context.get('frames_decoded', 'not recorded')}). "
        f"{context['cycles']} cycles of the {len(measured)} variants, interleaved in one run; the first cycle is "
        f"warm-up, so each figure is the median of {context['cycles'] - 1} step(s) per variant. Total run "
        f"{context['wall_seconds']:.0f} s.",
        "",
        "## Seconds per phase",
        "",
        "| phase | " + " | ".join(m.variant for m in measured) + " |",
        "|---|" + "---:|" * len(measured),
    ]
    for name in phase_names:
        cells = [f"{m.phase_seconds.get(name, 0.0):.2f}" for m in measured]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append(
        "| **rollout** (generation to speaker verification) | "
        + " | ".join(f"**{rollout_seconds(m):.2f}**" for m in measured)
        + " |"
    )
    lines.append("| **whole step** | " + " | ".join(f"**{m.step_seconds:.2f}**" for m in measured) + " |")
    lines.append(
        "| step's peak RSS, GB (above the resident models) | "
        + " | ".join(f"{m.peak_rss_gb:.2f}" if m.peak_rss_gb is not None else "n/a" for m in measured)
        + " |"
    )
    cuda_keys = sorted({key for m in measured for key in m.cuda_peaks_gb})
    for key in cuda_keys:
        lines.append(f"| {key} | " + " | ".join(f"{m.cuda_peaks_gb.get(key, 0.0):.2f}" for m in measured) + " |")
    lines += ["", "## Speed-ups against NeMo's defaults", "", "| variant | generation | ASR | rollout | whole step |"]
    lines.append("|---|---:|---:|---:|---:|")
    for m in measured:
        ratio = [
            nemo.phase_seconds[phases.GENERATION] / m.phase_seconds[phases.GENERATION],
            nemo.phase_seconds[phases.ASR] / m.phase_seconds[phases.ASR],
            rollout_seconds(nemo) / rollout_seconds(m),
            nemo.step_seconds / m.step_seconds,
        ]
        lines.append(f"| {m.variant} | " + " | ".join(f"{r:.2f}x" for r in ratio) + " |")
    return "\n".join(lines) + "\n"


def targets(measured: list[Measured]) -> list[str]:
    """The issue's targets on this CPU, each met or missed, with the phase that decides."""
    by_name = {m.variant: m for m in measured}
    nemo, ours = by_name[NEMO.name], by_name[OURS.name]
    kv, ct2 = by_name[KV_CACHE.name], by_name[CT2_INT8.name]
    lines = []

    def verdict(what, got, goal, why_missed):
        met = got >= goal
        lines.append(
            f"- {what}: {got:.2f}x (target {goal:g}x): "
            + ("met" if met else f"missed by {goal / got:.2f}x; {why_missed}")
        )

    verdict(
        "rollout generation, KV cache against NeMo's",
        nemo.phase_seconds[phases.GENERATION] / kv.phase_seconds[phases.GENERATION],
        3,
        "NeMo 3.0.0's decoder cache (transformer_2501.py) caches the attention only: every decoder step still runs "
        "the norms and the position-wise FFN (two thirds of a decoder layer's weights) over the whole prefix, so "
        "the decode stays quadratic in the rollout's length (profiled: the FFN's conv1d leads the generation "
        "phase with the cache on)",
    )
    verdict(
        "ASR, CTranslate2 int8 against transformers fp32",
        nemo.phase_seconds[phases.ASR] / ct2.phase_seconds[phases.ASR],
        2,
        "the phase is mostly Whisper's encoder over each clip's 30 s window, and in this process CTranslate2's "
        "threads share the cores with torch's (alone it takes 1.7-2.6x less CPU time than transformers fp32 on "
        "real speech: docs/benchmarks.md)",
    )
    biggest = max(ours.phase_seconds, key=ours.phase_seconds.get)
    verdict(
        "whole step, ours against NeMo's",
        nemo.step_seconds / ours.step_seconds,
        2,
        f"with the rollout faster, the step is dominated by `{biggest}` ({ours.phase_seconds[biggest]:.1f} s of "
        f"{ours.step_seconds:.1f} s), which no lever here changes",
    )
    return lines


def render(json_path: str, out: str) -> str:
    """The markdown again from a run's JSON (the figures are not re-measured; the words around them may change)."""
    with open(json_path) as f:
        saved = json.load(f)
    measured = [Measured(**m) for m in saved["measured"]]
    return _write(measured, saved["context"], saved["kv_cache_equivalence"], saved["ct2_load"], saved["steps"], out)


@contextlib.contextmanager
def published_run(max_steps: int, max_decoder_steps: int, accelerator: str, callbacks: list):
    """A GRPO run of `conf/benchmarks/online_po_published.yaml` in a temporary folder, Whisper in fp32; yields the
    composed config and the run's result while the folder still exists."""
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hydra import compose, initialize_config_dir

    from nemo_ext.stages import ONLINE_PO

    with tempfile.TemporaryDirectory() as runs, initialize_config_dir(os.path.join(REPO, "conf"), version_base="1.3"):
        cfg = compose(
            "benchmarks/online_po_published",
            [
                f"exp_manager.exp_dir={runs}",
                f"trainer.max_steps={max_steps}",
                f"trainer.accelerator={accelerator}",
                f"model.max_decoder_steps={max_decoder_steps}",
                "model.whisper.dtype=fp32",
            ],
        )
        yield cfg, ONLINE_PO.run(cfg, callbacks=callbacks)


def run(max_decoder_steps: int, cycles: int, accelerator: str, out: str, command: str, equivalence: bool) -> str:
    started = time.perf_counter()
    root = os.environ.get("MAGPIE_PUBLISHED_ROOT", os.path.join(REPO, ".published"))
    with open(os.path.join(root, "published_fixtures.json")) as f:
        fixtures = json.load(f)
    variants = GPU_VARIANTS if accelerator == "gpu" else VARIANTS
    alternation = Alternation(fixtures["whisper_ct2"], equivalence=equivalence, variants=variants)
    steps = cycles * len(variants)
    with published_run(steps, max_decoder_steps, accelerator, [alternation]) as (cfg, result):
        with open(os.path.join(result.log_dir, "memory", "rank0.jsonl")) as f:
            rank_rows = [json.loads(line) for line in f]
    measured = summarize(alternation.steps, rank_rows, variants)
    context = {
        "command": command,
        "machine": _machine(accelerator),
        "model": f"MagpieTTS of the published magpietts.yaml, {fixtures['policy_param_count'] / 1e6:.0f} M trainable "
        "parameters, random weights (nemo_ext_tools/published_fixtures.py); Whisper base, multilingual (real)",
        "batch_size": cfg.data.batch_size,
        "n_generations": cfg.model.n_generations_per_item,
        "max_decoder_steps": max_decoder_steps,
        "cycles": cycles,
        "wall_seconds": time.perf_counter() - started,
        # The measured steps only: the warm-up cycle is left out, as in summarize().
        "frames_decoded": sorted(
            {s["frames_decoded"] for s in alternation.steps[len(variants) :] if s.get("frames_decoded")}
        ),
    }
    ct2_load = {**alternation.ct2_load, "torch_whisper_bytes": _torch_whisper_bytes(rank_rows)}
    return _write(measured, context, alternation.kv_check, ct2_load, alternation.steps, out)


def _write(measured, context, kv_check, ct2_load, steps, out) -> str:
    text = report(measured, context)
    text += "\n## Targets (this machine)\n\n" + "\n".join(targets(measured)) + "\n"
    if kv_check:
        text += "\n## KV-cache rollouts against NeMo's at this size (same seed, same weights)\n\n"
        text += "| decoding | rollouts | differing | first differing frame | frames each | seconds without cache "
        text += "| with cache |\n|---|---:|---:|---|---|---:|---:|\n"
        for decoding, check in kv_check.items():
            text += (
                f"| {decoding} | {check['rollouts']} | {check['differing']} | {check['first_differing_frames']} | "
                f"{sorted(set(check['frames']))} | {check['seconds_without_cache']} | {check['seconds_with_cache']} |\n"
            )
    text += (
        f"\nCTranslate2 int8 Whisper base: loaded in {ct2_load['seconds']:.1f} s, "
        f"{ct2_load['bytes'] / 1e6:.0f} MB measured at load; transformers fp32: "
        f"{ct2_load['torch_whisper_bytes'] / 1e6:.0f} MB of weights.\n"
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        f.write(text)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(
            {
                "context": context,
                "measured": [dataclasses.asdict(m) for m in measured],
                "kv_cache_equivalence": kv_check,
                "ct2_load": ct2_load,
                "steps": steps,
            },
            f,
            indent=1,
        )
    return text


def _torch_whisper_bytes(rank_rows: list[dict]) -> float:
    return next((row["whisper/weights_bytes"] for row in rank_rows if "whisper/weights_bytes" in row), float("nan"))


def _machine(accelerator: str) -> str:
    if accelerator == "gpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
