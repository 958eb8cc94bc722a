"""Whisper dtype benchmark: weights, peak memory, latency, throughput and transcript agreement per dtype.

Each dtype is measured in a fresh process (`python scripts/benchmark_whisper_dtype.py --worker SPEC OUT`), so
one dtype's peak memory cannot bleed into the next one's."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

GB = 1e9
SCRIPT = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "benchmark_whisper_dtype.py"
)


CT2_PREFIX = "ct2:"  # --dtypes ct2:int8,ct2:fp32: the CTranslate2 backend in that dtype


def ct2_dtype(dtype: str) -> str | None:
    """For a `ct2:<dtype>` spelling, the canonical dtype of the CTranslate2 row (int8 allowed); None for a
    transformers row, whose spelling the caller checks as a whisper.dtype."""
    if not dtype.startswith(CT2_PREFIX):
        return None
    from nemo_ext.settings.whisper import parse_whisper_dtype

    return parse_whisper_dtype(dtype[len(CT2_PREFIX) :], key="--dtypes", allow_int8=True)


@dataclass
class BenchmarkSpec:
    pretrained: str
    files: list[str]
    dtypes: list[str]
    batch_sizes: list[int]
    language: str | None
    device: str  # cpu | cuda
    attn_implementation: str = "sdpa"
    ct2_pretrained: str | None = None  # the CTranslate2 directory of the `ct2:<dtype>` rows (<pretrained>-ct2)
    texts: list[str] | None = None  # the manifest's text per file: CER against it
    groups: list[int] | None = None  # the manifest's group per file: variants of one text (voices, speeds)


def audio_files(path: str, limit: int | None = None) -> list[str]:
    """Audio paths from a manifest (.json/.jsonl lines with audio_filepath) or a folder of .wav/.flac files."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith((".wav", ".flac")))
    else:
        with open(path) as f:
            files = [json.loads(line)["audio_filepath"] for line in f if line.strip()]
    if not files:
        raise ValueError(f"no audio found in {path}")
    return files[:limit] if limit else files


def manifest_columns(path: str, limit: int | None = None) -> tuple[list[str] | None, list[int] | None]:
    """`text` and `group` per line of a manifest (None where the manifest lacks them, or for a folder)."""
    if os.path.isdir(path):
        return None, None
    with open(path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = rows[:limit] if limit else rows
    texts = [row["text"] for row in rows] if all("text" in row for row in rows) else None
    groups = [int(row["group"]) for row in rows] if all("group" in row for row in rows) else None
    return texts, groups


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def sdpa_backend_from_kernels(kernel_names: list[str]) -> str:
    """Which scaled-dot-product-attention backend ran, from the CUDA kernel names a profiler saw."""
    names = " ".join(kernel_names).lower()
    for marker, backend in (("flash", "flash"), ("cudnn", "cudnn"), ("fmha", "efficient"), ("efficient", "efficient")):
        if marker in names:
            return backend
    return "math"


# ---------------------------------------------------------------- worker (one dtype, one process)
def measure_dtype(spec: BenchmarkSpec, dtype: str) -> dict:
    import torch

    from nemo_ext.settings.whisper import WhisperSettings
    from nemo_ext.telemetry.memory import module_footprint, process_peak_rss_bytes
    from nemo_ext.whisper_asr import load_whisper, transcribe_with_whisper

    cuda = spec.device == "cuda"
    canonical = ct2_dtype(dtype)
    on_ct2 = canonical is not None  # model.whisper.backend=ctranslate2, in the dtype after the prefix
    if on_ct2:
        from nemo_ext.whisper_ct2 import load_ct2_whisper

        processor, model = load_ct2_whisper(spec.ct2_pretrained or f"{spec.pretrained}-ct2", canonical, spec.device)
        footprint = model.footprint()
    else:
        settings = WhisperSettings.parse(
            {"pretrained": spec.pretrained, "dtype": dtype, "attn_implementation": spec.attn_implementation}
        )
        processor, model = load_whisper(settings)
        model.to(spec.device)
        footprint = module_footprint(model)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def transcribe(chunk):
        return transcribe_with_whisper(chunk, spec.language, processor, model, spec.device, batch_size=len(chunk))

    runs = {}
    for batch_size in spec.batch_sizes:
        transcribe(spec.files[:batch_size])  # warm-up: kernels, caches, allocator
        latencies, transcripts = [], []
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, len(spec.files), batch_size):
            chunk = spec.files[start : start + batch_size]
            sync()
            t0 = time.perf_counter()
            transcripts += transcribe(chunk)
            sync()
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
        runs[str(batch_size)] = {
            # CPU seconds of this process (all its threads): the work done, whatever else shares the machine.
            "cpu_s": time.process_time() - cpu_started,
            "median_ms": statistics.median(latencies),
            "p90_ms": statistics.quantiles(latencies, n=10)[-1] if len(latencies) > 1 else latencies[0],
            "samples_per_s": len(spec.files) / elapsed,
            "transcripts": [t.strip() for t in transcripts],
        }

    backend = "CTranslate2" if on_ct2 else "n/a (CPU)"
    if cuda and not on_ct2:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as profiler:
            transcribe(spec.files[:1])
        backend = sdpa_backend_from_kernels([event.key for event in profiler.key_averages()])
    return {
        "dtype": dtype,
        "loaded_dtype": ",".join(footprint.dtypes),
        "param_count": footprint.param_count,
        "weights_bytes": footprint.weights_bytes,
        "peak_bytes": torch.cuda.max_memory_allocated() if cuda else process_peak_rss_bytes(),
        "peak_kind": "CUDA peak allocated" if cuda else "process peak RSS",
        "sdpa_backend": backend,
        "runs": runs,
    }


# ---------------------------------------------------------------- parent
def run_benchmark(spec: BenchmarkSpec) -> dict:
    import torch

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        with open(spec_path, "w") as f:
            json.dump(asdict(spec), f)
        for dtype in spec.dtypes:
            out_path = os.path.join(tmp, f"{dtype}.json")
            subprocess.run([sys.executable, SCRIPT, "--worker", spec_path, dtype, out_path], check=True)
            with open(out_path) as f:
                results.append(json.load(f))
    reference = next((r for r in results if r["loaded_dtype"] == "float32"), results[0])
    for result in results:
        for batch_size, run in result["runs"].items():
            expected = reference["runs"][batch_size]["transcripts"]
            run["identical_to_reference"] = sum(a == b for a, b in zip(run["transcripts"], expected))
            run["mean_char_levenshtein"] = statistics.mean(
                levenshtein(a, b) for a, b in zip(run["transcripts"], expected)
            )
            run["cpu_ratio"] = run["cpu_s"] / reference["runs"][batch_size]["cpu_s"]
    if spec.texts:
        add_reward_agreement(results, reference, spec.texts, spec.groups)
    return {
        "spec": asdict(spec),
        "reference_dtype": reference["dtype"],
        "results": results,
        "torch": torch.__version__,
        "device_name": _device_name(spec.device),
    }


def character_error_rate(transcript: str, text: str) -> float:
    """The CER GRPO's reward uses: both sides through NeMo's `process_text_for_cer`, clamped to [0, 1]."""
    from nemo.collections.tts.parts.utils.helpers import process_text_for_cer

    hypothesis, reference = process_text_for_cer(transcript), process_text_for_cer(text)
    return min(levenshtein(hypothesis, reference) / max(len(reference), 1), 1.0)


def best_and_worst(cers: list[float], groups: list[int]) -> dict[int, tuple[int, int]]:
    """Per group of two or more: the positions of its best (lowest CER) and worst sample, first on ties."""
    members: dict[int, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    return {
        group: (min(indices, key=lambda i: cers[i]), max(indices, key=lambda i: cers[i]))
        for group, indices in members.items()
        if len(indices) > 1
    }


def add_reward_agreement(results: list[dict], reference: dict, texts: list[str], groups: list[int] | None) -> None:
    """What GRPO uses is the reward and the ranking within a group, not identical text: per-utterance CER against
    the manifest text, its difference from the reference dtype's, and how often a group's best or worst sample
    changes."""
    for result in results:
        for run in result["runs"].values():
            run["cer"] = [character_error_rate(t, text) for t, text in zip(run["transcripts"], texts)]
    for result in results:
        for batch_size, run in result["runs"].items():
            expected = reference["runs"][batch_size]["cer"]
            differences = [abs(a - b) for a, b in zip(run["cer"], expected)]
            run["mean_cer"] = statistics.mean(run["cer"])
            run["mean_abs_cer_diff"] = statistics.mean(differences)
            run["max_abs_cer_diff"] = max(differences)
            if groups:
                ours, theirs = best_and_worst(run["cer"], groups), best_and_worst(expected, groups)
                run["groups"] = len(ours)
                run["best_changed"] = sum(ours[g][0] != theirs[g][0] for g in ours)
                run["worst_changed"] = sum(ours[g][1] != theirs[g][1] for g in ours)


def _device_name(device: str) -> str:
    import platform

    import torch

    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"


COLUMNS = [
    "dtype",
    "loaded",
    "batch",
    "weights GB",
    "peak GB",
    "median ms",
    "p90 ms",
    "samples/s",
    "identical to ref",
    "mean char Levenshtein",
    "SDPA backend",
]


AGREEMENT_COLUMNS = ["CPU time vs ref", "mean CER", "mean abs CER diff", "max abs CER diff", "best / worst changed"]


def render_table(report: dict) -> str:
    results = report["results"]
    n = len(report["spec"]["files"])
    agreement = bool(report["spec"].get("texts"))
    columns = COLUMNS + (AGREEMENT_COLUMNS if agreement else ["CPU time vs ref"])
    lines = [
        f"Whisper `{report['spec']['pretrained']}` on {report['device_name']}, {n} samples, greedy; "
        f"peak = {results[0]['peak_kind']}; reference = {report['reference_dtype']}.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for result in results:
        for batch_size, run in result["runs"].items():
            lines.append(
                "| "
                + " | ".join(
                    [
                        result["dtype"],
                        result["loaded_dtype"],
                        batch_size,
                        f"{result['weights_bytes'] / GB:.4g}",
                        f"{result['peak_bytes'] / GB:.4g}",
                        f"{run['median_ms']:.1f}",
                        f"{run['p90_ms']:.1f}",
                        f"{run['samples_per_s']:.2f}",
                        f"{run['identical_to_reference']}/{n}",
                        f"{run['mean_char_levenshtein']:.2f}",
                        result["sdpa_backend"],
                        f"{run['cpu_ratio']:.2f}",
                        *(_agreement_cells(run) if agreement else []),
                    ]
                )
                + " |"
            )
    return "\n".join(lines)


def _agreement_cells(run: dict) -> list[str]:
    moved = f"{run['best_changed']} / {run['worst_changed']} of {run['groups']}" if "groups" in run else "-"
    return [f"{run['mean_cer']:.4f}", f"{run['mean_abs_cer_diff']:.4f}", f"{run['max_abs_cer_diff']:.4f}", moved]
