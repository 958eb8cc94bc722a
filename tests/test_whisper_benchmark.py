"""The Whisper dtype benchmark end to end on the tiny fixture (a fresh process per dtype)."""

import json
import os

import pytest
from magpie_testing import REPO, run_script

from nemo_ext_tools.whisper_benchmark import (
    AGREEMENT_COLUMNS,
    COLUMNS,
    add_reward_agreement,
    audio_files,
    best_and_worst,
    character_error_rate,
    levenshtein,
    manifest_columns,
    sdpa_backend_from_kernels,
)


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
    # The tiny manifest has texts (no groups): the CER agreement columns are there.
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS + AGREEMENT_COLUMNS
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
        assert run["cpu_s"] > 0 and run["cpu_ratio"] == 1.0
        assert run["mean_abs_cer_diff"] == 0 and len(run["cer"]) == 4 and "groups" not in run
    # The tiny Whisper transcribes every clip as '': CER 1 against every text, in every dtype.
    assert all(c == 1.0 for r in report["results"] for run in r["runs"].values() for c in run["cer"])
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
    from nemo_ext_tools.whisper_benchmark import SCRIPT

    assert os.path.samefile(SCRIPT, REPO / "scripts" / "benchmark_whisper_dtype.py")


def test_cer_is_the_rewards_cer():
    assert character_error_rate("Hello, World!", "hello world") == 0.0  # NeMo's process_text_for_cer on both
    assert character_error_rate("hello word", "hello world") == pytest.approx(1 / 11)
    assert character_error_rate("something much longer than the text", "hi") == 1.0  # clamped, as the reward is


def test_best_and_worst_per_group_and_how_often_they_move():
    assert best_and_worst([0.1, 0.3, 0.2, 0.5, 0.5], [0, 0, 0, 1, 2]) == {0: (0, 1)}  # single-member groups skipped
    texts = ["a b", "a b", "a b", "c d", "c d", "c d"]
    groups = [0, 0, 0, 1, 1, 1]
    reference = {"runs": {"8": {"transcripts": ["a b", "a", "x y z", "c d", "c", "q"]}}}
    # In the other dtype, group 0's best moves (sample 1 becomes exact, sample 0 degrades); group 1 is unchanged.
    other = {"runs": {"8": {"transcripts": ["a", "a b", "x y z", "c d", "c", "q"]}}}
    add_reward_agreement([reference, other], reference, texts, groups)
    run = other["runs"]["8"]
    assert (run["groups"], run["best_changed"], run["worst_changed"]) == (2, 1, 0)
    assert run["max_abs_cer_diff"] == pytest.approx(2 / 3)
    assert run["mean_abs_cer_diff"] == pytest.approx((2 / 3 + 2 / 3) / 6)
    assert reference["runs"]["8"]["mean_abs_cer_diff"] == 0


def test_manifest_columns(tiny, tmp_path):
    texts, groups = manifest_columns(tiny.manifest, limit=2)
    assert len(texts) == 2 and groups is None
    assert manifest_columns(tiny.audio_dir) == (None, None)
