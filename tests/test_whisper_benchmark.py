"""The Whisper dtype benchmark end to end on the tiny fixture (a fresh process per dtype)."""

import json
import os

import pytest
from magpie_testing import REPO, run_script

from nemo_ext.whisper_benchmark import COLUMNS, audio_files, levenshtein, sdpa_backend_from_kernels


@pytest.mark.e2e
@pytest.mark.multiprocess
def test_benchmark_table_and_json_on_tiny_whisper(tiny, tmp_path):
    out = tmp_path / "bench"
    result = run_script(
        "scripts/benchmark_whisper_dtype.py",
        "--audio",
        tiny.manifest,
        "--num-samples",
        "4",
        "--batch-sizes",
        "1,2",
        "--language",
        "de",
        "--dtypes",
        "fp32,fp16,bf16,auto",
        "--config-name",
        "online_po_tiny",
        "--out",
        str(out),
        f"tiny_root={tiny.root}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "bench.md").read_text()
    assert table in result.stdout
    header = next(line for line in table.splitlines() if line.startswith("| dtype"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| dtype")]
    assert len(rows) == 4 * 2  # dtypes x batch sizes

    report = json.loads((tmp_path / "bench.json").read_text())
    by_dtype = {r["dtype"]: r for r in report["results"]}
    assert {d: r["loaded_dtype"] for d, r in by_dtype.items()} == {
        "fp32": "float32",
        "fp16": "float16",
        "bf16": "bfloat16",
        "auto": "float16",
    }
    fp32_bytes = by_dtype["fp32"]["weights_bytes"]
    assert fp32_bytes == tiny.whisper_param_count * 4
    for half in ("fp16", "bf16", "auto"):
        assert by_dtype[half]["weights_bytes"] * 2 == fp32_bytes
    assert report["reference_dtype"] == "fp32"
    for batch in ("1", "2"):
        run = by_dtype["fp32"]["runs"][batch]
        assert run["identical_to_reference"] == 4 and run["mean_char_levenshtein"] == 0
        assert run["median_ms"] > 0 and run["p90_ms"] >= run["median_ms"] and run["samples_per_s"] > 0
    assert all(r["peak_kind"] == "process peak RSS" and r["peak_bytes"] > 0 for r in report["results"])
    assert all(r["sdpa_backend"] == "n/a (CPU)" for r in report["results"])


def test_bad_dtype_is_refused_before_any_work(tiny, tmp_path):
    result = run_script(
        "scripts/benchmark_whisper_dtype.py",
        "--audio",
        tiny.manifest,
        "--dtypes",
        "fp32,int4",
        "--config-name",
        "online_po_tiny",
        f"tiny_root={tiny.root}",
        "--out",
        str(tmp_path / "b"),
    )
    assert result.returncode != 0
    assert "--dtypes='int4' is invalid; allowed: auto, float16" in result.stderr
    assert not (tmp_path / "b.json").exists()


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


@pytest.mark.parametrize(
    ("kernels", "backend"),
    [
        (["void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits>"], "flash"),
        (["fmha_cutlassF_f32_aligned_64x64_rf_sm80"], "efficient"),
        (["cudnn_generated_fort_native_sdpa_sm90"], "cudnn"),
        (["ampere_sgemm_128x64_tn", "softmax_warp_forward"], "math"),
    ],
)
def test_sdpa_backend_from_kernel_names(kernels, backend):
    assert sdpa_backend_from_kernels(kernels) == backend


def test_audio_files_from_manifest_and_folder(tiny, tmp_path):
    assert audio_files(tiny.manifest, limit=2) == [os.path.join(tiny.audio_dir, f"utt{i}.wav") for i in range(2)]
    assert len(audio_files(tiny.audio_dir)) == 4
    with pytest.raises(ValueError, match="no audio found"):
        audio_files(str(tmp_path))


def test_script_is_where_the_worker_launcher_expects_it():
    from nemo_ext.whisper_benchmark import SCRIPT

    assert os.path.samefile(SCRIPT, REPO / "scripts" / "benchmark_whisper_dtype.py")
