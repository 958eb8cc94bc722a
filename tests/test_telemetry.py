"""Memory telemetry in single-process runs: precision casts, DataGen per-batch figures, configuration."""

import os

import pytest
import torch
from magpie_testing import requires_cuda

from nemo_ext.recipes.offline_po_datagen import run_offline_po_datagen
from nemo_ext.recipes.online_po import run_online_po
from nemo_ext.wandb_offline import find_offline_runs, read_offline_run

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
        run = run_online_po(cfg)
    assert run.model.whisper_model.dtype == torch.bfloat16
    logged = offline_run(tmp_path)
    assert logged.config["whisper/dtype_configured"] == "auto"
    assert logged.config["whisper/dtype_loaded"] == "bfloat16"
    assert logged.series("whisper/weights_bytes")[0] == tiny.whisper_param_count * 2


def test_no_warning_when_precision_keeps_the_dtype(tiny_config, tiny, recwarn, caplog):
    caplog.set_level("INFO")
    run_online_po(tiny_config("online_po_tiny", "trainer.max_steps=1", "+whisper.dtype=fp32"))
    assert not [w for w in recwarn if "Whisper is in" in str(w.message)]
    [summary] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Memory summary:")]
    count = tiny.whisper_param_count
    assert (
        f"whisper weights {count * 4 / 1e9:.4g} GB in float32 (configured float32; 4 bytes/param, {count} params)"
        in summary
    )
    assert "CPU peak RSS" in summary and "GB (one rank)" in summary


def test_datagen_logs_figures_per_test_batch(tiny_config, tmp_path, tiny):
    run = run_offline_po_datagen(tiny_config("offline_po_datagen_tiny", "+whisper.dtype=fp32"))
    logged = offline_run(tmp_path)
    assert logged.series("whisper/weights_bytes") == [tiny.whisper_param_count * 4]
    assert len(logged.series("cpu/peak_rss_gb")) == 1 + 2  # load + 4 items at batch 2
    assert logged.config["whisper/dtype_loaded"] == "float32"
    memory_dir = os.path.join(os.path.dirname(run.audio_dir), "memory")
    assert os.listdir(memory_dir) == ["rank0.jsonl"]


def test_log_interval_is_configurable(tiny_config, tmp_path):
    run_online_po(tiny_config("online_po_tiny", "telemetry.log_every_n_steps=2", "trainer.max_steps=2"))
    steps = [row["trainer/global_step"] for row in offline_run(tmp_path).history if "cpu/rss_gb" in row]
    assert steps == [0, 2]  # load, then every second step


def test_telemetry_can_be_switched_off(tiny_config, tmp_path):
    run = run_online_po(tiny_config("online_po_tiny", "telemetry.enabled=false", "trainer.max_steps=1"))
    logged = offline_run(tmp_path)
    assert not any(key.startswith(("whisper/", "cpu/", "gpu/")) for row in logged.history for key in row)
    assert logged.series("train_loss")
    assert not os.path.exists(os.path.join(run.log_dir, "memory"))
    assert not run.model.step_memory.enabled


@pytest.mark.gpu
@requires_cuda
def test_cuda_figures_on_gpu(tiny_config, tmp_path, tiny):
    run_online_po(tiny_config("online_po_tiny", "trainer.accelerator=gpu", "trainer.max_steps=1"))
    logged = offline_run(tmp_path)
    [step] = [row for row in logged.history if "reward/peak_allocated_gb" in row]
    assert 0 < step["reward/peak_allocated_gb"] <= step["gpu/peak_allocated_gb"]
    assert step["gpu/reserved_gb"] >= step["gpu/allocated_gb"] > 0
    assert logged.series("whisper/weights_bytes")[0] == tiny.whisper_param_count * 2
