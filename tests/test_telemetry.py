"""Memory telemetry in single-process runs: precision casts, DataGen per-batch figures, configuration."""

import os

import pytest
import torch
from magpie_testing import requires_cuda

from nemo_ext.stages import OFFLINE_PO_DATAGEN, ONLINE_PO
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.e2e


def offline_run(tmp_path):
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    return read_offline_run(run_file)


def test_bf16_true_precision_cast_is_logged_and_warned(tiny_config, tmp_path, tiny):
    # MagpieTTS's alignment (CTC) loss has no bf16 kernel on CPU: off for this CPU-only test.
    cfg = tiny_config(
        "online_po_tiny", "trainer.precision=bf16-true", "trainer.max_steps=1", "+model.alignment_loss_scale=0.0"
    )
    # NeMo's logger replaces warnings.showwarning when it is first imported, which would hide the warning from
    # pytest.warns when this test runs first: import it now and let warnings reach Python's machinery.
    from nemo.utils import logging as nemo_logging

    nemo_logging.captureWarnings(False)
    with pytest.warns(
        UserWarning,
        match=r"Whisper is in bfloat16 but model.whisper.dtype=auto loaded it as float16: "
        r"trainer.precision=bf16-true cast it",
    ):
        run = ONLINE_PO.run(cfg)
    assert run.model.whisper_model.dtype == torch.bfloat16
    logged = offline_run(tmp_path)
    assert logged.config["whisper/dtype_configured"] == "auto"
    assert logged.config["whisper/dtype_loaded"] == "bfloat16"
    assert logged.series("whisper/weights_bytes")[0] == tiny.whisper_param_count * 2


def test_no_warning_when_precision_keeps_the_dtype(tiny_config, tiny, recwarn, caplog):
    caplog.set_level("INFO")
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=1", "+whisper.dtype=fp32"))
    assert not [w for w in recwarn if "Whisper is in" in str(w.message)]
    [summary] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Memory summary:")]
    count = tiny.whisper_param_count
    assert (
        f"whisper weights {count * 4 / 1e9:.4g} GB in float32 (configured float32; 4 bytes/param, {count} params)"
        in summary
    )
    assert "CPU peak RSS" in summary and "GB (one rank)" in summary


def test_datagen_logs_figures_per_test_batch(tiny_config, tmp_path, tiny):
    run = OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny", "+whisper.dtype=fp32"))
    logged = offline_run(tmp_path)
    assert logged.series("whisper/weights_bytes") == [tiny.whisper_param_count * 4]
    assert len(logged.series("cpu/peak_rss_gb")) == 1 + 2  # load + 4 items at batch 2
    assert logged.config["whisper/dtype_loaded"] == "float32"
    memory_dir = os.path.join(os.path.dirname(run.audio_dir), "memory")
    assert sorted(os.listdir(memory_dir)) == ["rank0.jsonl", "step_anatomy.png"]


def test_log_interval_is_configurable(tiny_config, tmp_path):
    ONLINE_PO.run(tiny_config("online_po_tiny", "telemetry.log_every_n_steps=2", "trainer.max_steps=2"))
    steps = [row["trainer/global_step"] for row in offline_run(tmp_path).history if "cpu/rss_gb" in row]
    assert steps == [0, 2]  # load, then every second step


def test_telemetry_can_be_switched_off(tiny_config, tmp_path):
    run = ONLINE_PO.run(tiny_config("online_po_tiny", "telemetry.enabled=false", "trainer.max_steps=1"))
    logged = offline_run(tmp_path)
    assert not any(key.startswith(("whisper/", "cpu/", "gpu/")) for row in logged.history for key in row)
    assert logged.series("train_loss")
    assert not os.path.exists(os.path.join(run.log_dir, "memory"))
    assert not run.model.step_anatomy.enabled
    assert not any(key.startswith("time/") for row in logged.history for key in row)


@pytest.mark.gpu
@requires_cuda
def test_cuda_figures_on_gpu(tiny_config, tmp_path, tiny):
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.accelerator=gpu", "trainer.max_steps=1"))
    logged = offline_run(tmp_path)
    [step] = [row for row in logged.history if "gpu/reward_peak_allocated_gb" in row]
    assert 0 < step["gpu/generation_peak_allocated_gb"] <= step["gpu/reward_peak_allocated_gb"]
    assert step["gpu/reward_peak_allocated_gb"] <= step["gpu/peak_allocated_gb"]
    assert step["gpu/reserved_gb"] >= step["gpu/allocated_gb"] > 0
    assert step["gpu/device_used_gb"] >= step["gpu/reserved_gb"]
    assert logged.series("whisper/weights_bytes")[0] == tiny.whisper_param_count * 2


def grpo_phases_rows(logged):
    from nemo_ext.telemetry.phases import GRPO_PHASES

    rows = [row for row in logged.history if "time/step_s" in row]
    for row in rows:
        assert {f"time/{phase}_s" for phase in GRPO_PHASES} <= set(row)
    return rows


def test_every_grpo_phase_is_timed_and_the_phases_cover_the_step(tiny_config, tmp_path, caplog):
    """Each phase's own seconds, plus `other` (Lightning's own work between the hooks), add up to the step, and
    every phase but `other` took time. How small `other` stays is a measurement, not a test:
    benchmarks/telemetry_overhead.md."""
    from nemo_ext.telemetry.phases import GRPO_PHASES

    caplog.set_level("INFO")
    run = ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=3"))
    rows = grpo_phases_rows(offline_run(tmp_path))
    assert len(rows) == 3
    for row in rows:
        total = sum(row[f"time/{phase}_s"] for phase in GRPO_PHASES)
        assert total == pytest.approx(row["time/step_s"], rel=1e-6)
        for phase in GRPO_PHASES:
            if phase != "other":
                assert row[f"time/{phase}_s"] > 0, phase
        assert row["time/other_s"] >= 0

    picture = os.path.join(run.log_dir, "memory", "step_anatomy.png")
    assert open(picture, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    images = [row for row in offline_run(tmp_path).history if "memory/step_anatomy/_type" in row]
    [image] = images
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    media = os.path.join(os.path.dirname(run_file), "files", image["memory/step_anatomy/filenames"][0])
    assert os.path.getsize(media) == os.path.getsize(picture)

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Step anatomy: ")]
    for phase in GRPO_PHASES:
        assert any(line.startswith(f"Step anatomy: {phase} ") for line in lines), phase


def test_datagen_phases(tiny_config, tmp_path):
    from nemo_ext.telemetry.phases import DATAGEN_PHASES

    OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny"))
    rows = [row for row in offline_run(tmp_path).history if "time/step_s" in row]
    assert len(rows) == 2  # 4 items at batch 2
    for row in rows:
        assert sum(row[f"time/{phase}_s"] for phase in DATAGEN_PHASES) == pytest.approx(row["time/step_s"], rel=1e-6)
        assert all(row[f"time/{phase}_s"] > 0 for phase in DATAGEN_PHASES if phase != "other")


def test_a_cuda_out_of_memory_names_its_phase_and_leaves_a_snapshot(tiny_config, tmp_path, monkeypatch, capsys):
    """Simulated: the tiny models never run out of memory on a CPU. The error is raised inside the ASR phase of
    the first step; the run fails with it, and the report names the phase and the snapshot file (empty here:
    CUDA memory history is recorded on GPU only)."""
    import pickle

    from nemo_ext import whisper_asr

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (simulated)")

    monkeypatch.setattr(whisper_asr, "_transcribe", out_of_memory)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        ONLINE_PO.run(tiny_config("online_po_tiny", "telemetry.oom_snapshot=true", "trainer.max_steps=1"))
    [snapshot] = [
        os.path.join(root, name)
        for root, _, names in os.walk(tmp_path / "runs")
        for name in names
        if name == "oom_rank0.pickle"
    ]
    assert pickle.load(open(snapshot, "rb"))["segments"] == []
    out = capsys.readouterr().out
    assert "[magpie] rank 0: CUDA out of memory in phase asr of step 1; empty snapshot" in out
    assert snapshot in out


@requires_cuda
def test_out_of_memory_snapshot_on_gpu_records_the_history(tiny_config, tmp_path, monkeypatch):
    import pickle

    from nemo_ext import whisper_asr

    def allocate_too_much(*args, **kwargs):
        torch.empty(1 << 50, dtype=torch.uint8, device="cuda")  # a petabyte

    monkeypatch.setattr(whisper_asr, "_transcribe", allocate_too_much)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        ONLINE_PO.run(
            tiny_config(
                "online_po_tiny", "trainer.accelerator=gpu", "telemetry.oom_snapshot=true", "trainer.max_steps=1"
            )
        )
    [snapshot] = [os.path.join(r, n) for r, _, ns in os.walk(tmp_path / "runs") for n in ns if n == "oom_rank0.pickle"]
    assert pickle.load(open(snapshot, "rb"))["segments"]


def test_the_step_summary_leaves_the_warm_up_out_and_says_so(tiny_config, tmp_path, caplog):
    caplog.set_level("INFO")
    run = ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=3"))
    messages = [r.getMessage() for r in caplog.records]
    [heading] = [m for m in messages if m.startswith("Step anatomy over")]
    assert heading.startswith("Step anatomy over steps 2-3 (2 logged); left out: 1 warm-up step (")
    rows = [r for r in __import__("magpie_testing").read_jsonl(os.path.join(run.log_dir, "memory", "rank0.jsonl"))]
    assert [r["step"] for r in rows if r["phase"] == "step"] == [1, 2, 3]  # the rank file keeps the warm-up step


@pytest.mark.parametrize("count", [1, 9, 12, 13, 40, 430, 3000])
def test_the_step_anatomy_picture_labels_few_enough_steps_to_read(count):
    """40 labelled steps ran together ("1011121314..."): at most 12, every k-th, the last one included."""
    from nemo_ext.telemetry.plot import step_ticks

    steps = list(range(1, count + 1))
    ticks = step_ticks(steps)
    assert len(ticks) <= 13 and ticks[-1] == steps[-1] and set(ticks) <= set(steps)
    assert ticks == sorted(set(ticks))
    if count <= 12:
        assert ticks == steps
