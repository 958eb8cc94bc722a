"""GRPO end to end on the tiny fixtures: a real Lightning Trainer, real NeMo classes, offline W&B."""

import glob
import os

import pytest
import torch

from nemo_ext.config import WhisperSettings
from nemo_ext.recipes.online_po import run_online_po
from nemo_ext.wandb_offline import find_offline_runs, read_offline_run
from nemo_ext.whisper_asr import load_whisper

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize(
    ("override", "dtype", "bytes_per_param"),
    [
        ("+whisper.dtype=auto", torch.float16, 2),
        ("model.whisper.dtype=fp32", torch.float32, 4),
        ("+whisper.dtype=bf16", torch.bfloat16, 2),
    ],
)
def test_one_grpo_step(tiny_config, tmp_path, tiny, override, dtype, bytes_per_param):
    run = run_online_po(tiny_config("online_po_tiny", override, "trainer.max_steps=1"))
    model, trainer = run.model, run.trainer
    whisper = model.whisper_model
    assert trainer.global_step == 1

    # Loaded in the configured dtype, and still in it after the step.
    assert {p.dtype for p in whisper.parameters()} == {dtype}
    assert sum(p.numel() * p.element_size() for p in whisper.parameters()) == tiny.whisper_param_count * bytes_per_param

    # Frozen: out of the optimizer, no gradients, weights bit-identical to a fresh load.
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    for name, module in model.frozen_submodules().items():
        assert not any(p.requires_grad for p in module.parameters()), name
        assert not optimized & {id(p) for p in module.parameters()}, name
        assert not module.training, name
    _, fresh = load_whisper(WhisperSettings.from_config({"pretrained": tiny.whisper, "dtype": override.split("=")[1]}))
    for (name, before), after in zip(fresh.state_dict().items(), whisper.state_dict().values()):
        assert torch.equal(before, after), name

    # The policy was trained: its parameters are in the optimizer and moved.
    reference = torch.load(tiny.reference_checkpoint, weights_only=False)["state_dict"]
    trained = model.state_dict()
    assert any(not torch.equal(reference[k], trained[k]) for k in reference if k.startswith("decoder."))
    assert optimized

    # Per-item reward metrics: batch 2 x 2 generations.
    metrics = glob.glob(os.path.join(run.log_dir, "audios", "*_metrics.json"))
    assert len(metrics) == 4

    # W&B (offline) got the Whisper figures for what was actually loaded.
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    logged = read_offline_run(run_file)
    assert logged.series("whisper/weights_bytes")[0] == tiny.whisper_param_count * bytes_per_param
    assert logged.series("whisper/bytes_per_param")[0] == bytes_per_param
    assert logged.config["whisper/dtype_loaded"] == str(dtype).removeprefix("torch.")
    assert logged.series("train_loss"), "training metrics reached W&B"
