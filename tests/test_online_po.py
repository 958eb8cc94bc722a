"""GRPO end to end on the tiny fixtures: a real Lightning Trainer, real NeMo classes, offline W&B."""

import glob
import os

import pytest
import torch

from nemo_ext.settings.whisper import WhisperSettings
from nemo_ext.stages import ONLINE_PO
from nemo_ext.whisper_asr import load_whisper
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

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
    run = ONLINE_PO.run(tiny_config("online_po_tiny", override, "trainer.max_steps=1"))
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
        # Reward models always run in eval mode; the reference follows the policy (reference_policy_mode: matched).
        assert module.training == (name == "_reference_model" and model.training), name
    _, fresh = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": override.split("=")[1]}))
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


def test_reward_models_are_not_in_ddp_gradient_buckets(tiny_config, tiny):
    """Under DDP (one gloo process here), only the policy's trainable parameters are bucketed for all-reduce."""
    from lightning.pytorch import Callback

    class RecordDDP(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.wrapper = type(trainer.strategy.model).__name__
            self.bucketed = trainer.strategy.model._get_ddp_logging_data()

    probe = RecordDDP()
    run = ONLINE_PO.run(
        tiny_config("online_po_tiny", "trainer.strategy=ddp_find_unused_parameters_true", "trainer.max_steps=1"),
        callbacks=[probe],
    )
    assert probe.wrapper == "DistributedDataParallel"
    reward_modules = tuple(f"{name}." for name in run.model.frozen_submodules())
    assert "whisper_model." in reward_modules
    policy = [p for name, p in run.model.named_parameters() if not name.startswith(reward_modules) and p.requires_grad]
    assert probe.bucketed["num_parameter_tensors"] == len(policy)
    assert probe.bucketed["total_parameter_size_bytes"] == sum(p.numel() * p.element_size() for p in policy)


def test_nemo_reward_with_whisper_loaded_too(tiny_config, tiny):
    """The third upstream load site: reward from the NeMo ASR model, Whisper loaded (once) beside it."""
    run = ONLINE_PO.run(
        tiny_config(
            "online_po_tiny",
            "model.reward_asr_model=nemo",
            "model.load_whisper_model=true",
            "+whisper.dtype=bf16",
            "trainer.max_steps=1",
        )
    )
    assert type(run.model.eval_asr_model).__name__ == "EncDecCTCModel"  # the tiny .nemo, not parakeet from the hub
    assert run.model.whisper_model.dtype == torch.bfloat16
    assert {"eval_asr_model", "whisper_model"} <= set(run.model.frozen_submodules())
    assert run.trainer.global_step == 1


@pytest.mark.parametrize(("batch_size", "generate_calls"), [("null", 1), ("1", 4)])
def test_whisper_batch_size_caps_clips_per_generate_call(tiny_config, batch_size, generate_calls):
    """One step scores batch 2 x 2 generations = 4 clips, all in German: one generate() call, or one per clip."""
    from lightning.pytorch import Callback

    class CountGenerateCalls(Callback):
        calls = 0

        def on_fit_start(self, trainer, pl_module):
            whisper = pl_module.whisper_model
            original = whisper.generate

            def counting_generate(*args, **kwargs):
                CountGenerateCalls.calls += 1
                return original(*args, **kwargs)

            whisper.generate = counting_generate  # wraps the real generate; the model still runs

    ONLINE_PO.run(
        tiny_config("online_po_tiny", f"+whisper.batch_size={batch_size}", "trainer.max_steps=1"),
        callbacks=[CountGenerateCalls()],
    )
    assert CountGenerateCalls.calls == generate_calls


@pytest.mark.parametrize("iterations", [1, 2], ids=["nemo-step", "several-updates"])
def test_empty_cuda_cache_every_step_false_skips_nemos_call_before_each_step(tiny_config, monkeypatch, iterations):
    """NeMo's training_step (and our several-updates step) begins with torch.cuda.empty_cache(); the switch skips
    exactly that call. A counting wrapper around the real function (a no-op without CUDA) sees every call."""
    counts = {}
    original = torch.cuda.empty_cache
    for keep in ("true", "false"):
        calls = []

        def counting(calls=calls):
            calls.append(1)
            return original()

        monkeypatch.setattr(torch.cuda, "empty_cache", counting)
        run = ONLINE_PO.run(
            tiny_config(
                "online_po_tiny",
                "trainer.max_steps=2",
                f"model.num_iterations={iterations}",
                f"model.empty_cuda_cache_every_step={keep}",
            )
        )
        counts[keep] = len(calls)
        monkeypatch.undo()
    rollout_batches = run.trainer.global_step // iterations
    assert counts["true"] - counts["false"] == rollout_batches == 2 // iterations, counts
