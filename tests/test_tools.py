"""The data and inspection tools in scripts/."""

import json
import shutil

import pytest
from magpie_testing import run_script

from nemo_ext.stages import ONLINE_PO


@pytest.mark.e2e
def test_read_wandb_offline_prints_config_and_filtered_rows(tiny_config, tmp_path):
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=1"))
    result = run_script("scripts/read_wandb_offline.py", str(tmp_path / "runs"), "--prefix", "whisper/")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[1].removeprefix("config: "))["whisper/dtype_loaded"] == "float16"
    rows = [json.loads(line.split(": ", 1)[1]) for line in lines[2:]]
    assert rows and all(key.startswith("whisper/") for row in rows for key in row)
    assert rows[0]["whisper/bytes_per_param"] == 2


def test_read_wandb_offline_names_a_folder_without_runs(tmp_path):
    result = run_script("scripts/read_wandb_offline.py", str(tmp_path))
    assert result.returncode == 2 and "no offline-run-*/run-*.wandb under" in result.stderr


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng (bash scripts/install_test_tools.sh)")
def test_synthesize_speech_manifest(tmp_path):
    result = run_script("scripts/synthesize_speech_manifest.py", str(tmp_path), "--count", "2")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "manifest.json").read_text().splitlines()]
    assert [r["text"] for r in rows] == [
        "The quick brown fox jumps over the lazy dog.",
        "Please call me tomorrow morning.",
    ]
    assert all(r["duration"] > 0.5 and r["audio_filepath"].startswith(str(tmp_path)) for r in rows)


def test_synthesize_speech_manifest_rejects_bad_count(tmp_path):
    result = run_script("scripts/synthesize_speech_manifest.py", str(tmp_path), "--count", "125")
    assert result.returncode == 2
    assert (
        "--count=125 is invalid; allowed: 1 to 124 for --language en" in result.stderr
        or "espeak-ng is not installed" in result.stderr
    )


@pytest.mark.skipif(not shutil.which("espeak-ng"), reason="needs espeak-ng (bash scripts/install_test_tools.sh)")
def test_synthesize_italian_groups_of_variants(tmp_path):
    """100+ sentences per language, and each sentence spoken by several voices and speeds (one group each)."""
    result = run_script(
        "scripts/synthesize_speech_manifest.py", str(tmp_path), "--language", "it", "--count", "2", "--variants", "3"
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (tmp_path / "manifest.json").read_text().splitlines()]
    assert [r["group"] for r in rows] == [0, 0, 0, 1, 1, 1]
    assert {r["language"] for r in rows} == {"it"} and rows[0]["text"] == "Oggi il tempo è molto bello."
    assert len({r["duration"] for r in rows[:3]}) == 3  # other speeds: other lengths
    too_many = run_script("scripts/synthesize_speech_manifest.py", str(tmp_path), "--language", "it", "--count", "106")
    assert "allowed: 1 to 105 for --language it" in too_many.stderr


@pytest.mark.e2e
@pytest.mark.slow
def test_telemetry_overhead_benchmark_writes_its_table(tiny, tmp_path):
    out = tmp_path / "overhead.md"
    result = run_script(
        "scripts/benchmark_telemetry_overhead.py", "--steps", "6", "--tiny-root", tiny.root, "--out", str(out)
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    assert "| steps measured (on / off) | 2 / 2 |" in table
    share = float(table.split("share of their time | ")[1].split("%")[0])
    assert 0 < share < 100


@pytest.mark.e2e
@pytest.mark.slow
def test_reward_path_benchmark_writes_its_table(tiny, tmp_path):
    out = tmp_path / "reward_path.md"
    result = run_script("scripts/benchmark_reward_path.py", "--steps", "6", "--tiny-root", tiny.root, "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    for reward_asr in ("whisper", "nemo"):
        section = table.split(f"## `model.reward_asr_model={reward_asr}`")[1].split("## ")[0]
        for phase in ("audio_io", "asr", "speaker_verification", "total"):
            assert f"| {phase} | " in section
        assert "Steps per path: 2 (files), 2 (memory)" in section


@pytest.mark.e2e
@pytest.mark.slow
def test_gpu_report_runs_everything_but_the_cuda_parts_on_a_cpu(tiny, tmp_path):
    import subprocess

    from magpie_testing import REPO

    from nemo_ext.telemetry.phases import GRPO_PHASES

    out = tmp_path / "report.md"
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_report.sh"), "--accelerator", "cpu", "--steps", "2"]
        + ["--num-samples", "4", "--tiny-root", tiny.root, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = out.read_text()
    assert "- no CUDA device used (accelerator cpu)" in report
    assert "## Whisper per dtype" in report and "## GRPO step anatomy (tiny fixtures)" in report
    for dtype in ("float32", "float16", "bfloat16"):
        assert dtype in report.split("## GRPO")[0], dtype
    for phase in GRPO_PHASES:
        assert f"| {phase} | " in report, phase
    assert (tmp_path / "report_step_anatomy.png").is_file()
    assert "![step anatomy](report_step_anatomy.png)" in report
