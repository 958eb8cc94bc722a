"""EasyMagpieTTS GRPO end to end on the tiny fixtures: a real Lightning Trainer, real NeMo classes (a tiny Llama
backbone from a local config), offline W&B read back from its files."""

from __future__ import annotations

import glob
import json
import os

import pytest
import torch
from magpie_testing import run_recipe

from nemo_ext.checkpoints import configs_in_checkpoints_allowed
from nemo_ext.errors import ConfigError
from nemo_ext.settings.whisper import WhisperSettings
from nemo_ext.stages import EASY_ONLINE_PO
from nemo_ext.telemetry.phases import GRPO_PHASES
from nemo_ext.whisper_asr import load_whisper
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.e2e

REWARD_MODELS = ("whisper_model", "_eval_asr_model", "_eval_speaker_verification_model")


@pytest.mark.parametrize(
    ("override", "dtype", "bytes_per_param"),
    [
        ("+whisper.dtype=auto", torch.float16, 2),
        ("+whisper.dtype=bf16", torch.bfloat16, 2),
        ("model.whisper.dtype=fp32", torch.float32, 4),
    ],
)
def test_one_grpo_step_with_the_whisper_reward(tiny_config, tmp_path, tiny, override, dtype, bytes_per_param):
    run = EASY_ONLINE_PO.run(tiny_config("easy_online_po_tiny", override, "trainer.max_steps=1"))
    model, trainer = run.model, run.trainer
    assert trainer.global_step == 1
    whisper = model.whisper_model

    # Loaded once, from model.whisper, in the configured dtype, and still in it (and unchanged) after the step.
    assert {p.dtype for p in whisper.parameters()} == {dtype}
    assert model._eval_asr_model is None
    _, fresh = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": override.split("=")[1]}))
    for (name, before), after in zip(fresh.state_dict().items(), whisper.state_dict().values()):
        assert torch.equal(before, after), name

    # Reward models and reference: frozen, in eval mode, out of the optimizer and out of the checkpoint.
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    frozen = model.frozen_submodules()
    assert {"whisper_model", "_eval_speaker_verification_model", "_reference_model"} <= set(frozen)
    for name, module in frozen.items():
        assert not any(p.requires_grad for p in module.parameters()), name
        assert not optimized & {id(p) for p in module.parameters()}, name
        assert not module.training, name
    assert not [key for key in model.state_dict() if key.startswith(tuple(frozen))]

    # The policy trained: the backbone moved away from the checkpoint it started from.
    with configs_in_checkpoints_allowed():
        start = torch.load(tiny.easy_reference_checkpoint, map_location="cpu")["state_dict"]
    trained = model.state_dict()
    assert any(not torch.equal(start[k], trained[k]) for k in start if k.startswith("decoder."))

    # W&B (offline files): Whisper's weights are params x bytes of the dtype actually loaded; every phase logged.
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    logged = read_offline_run(run_file)
    assert logged.series("whisper/weights_bytes")[0] == tiny.whisper_param_count * bytes_per_param
    assert logged.series("whisper/bytes_per_param")[0] == bytes_per_param
    assert logged.config["whisper/dtype_loaded"] == str(dtype).removeprefix("torch.")
    assert logged.series("train_loss") and logged.series("train_mean_reward")
    for phase in ("generation", "codec_decode", "audio_io", "asr", "speaker_verification", "policy_forward"):
        assert logged.series(f"time/{phase}_s")[0] > 0, phase
    phases = sum(logged.series(f"time/{phase}_s")[0] for phase in GRPO_PHASES)
    assert phases == pytest.approx(logged.series("time/step_s")[0], rel=0.05)
    assert os.path.isfile(os.path.join(run.log_dir, "memory", "step_anatomy.png"))


def test_one_grpo_step_with_the_nemo_asr_reward(tiny_config, tiny):
    run = EASY_ONLINE_PO.run(tiny_config("easy_online_po_tiny", "model.reward_asr_model=nemo", "trainer.max_steps=1"))
    # The tiny .nemo from model.nemo_asr (NeMo loads parakeet-ctc from the hub by name, through the RNNT class).
    assert type(run.model._eval_asr_model).__name__ == "EncDecCTCModel"
    assert run.model.whisper_model is None
    assert "_eval_asr_model" in run.model.frozen_submodules()
    assert run.trainer.global_step == 1
    [state] = glob.glob(os.path.join(os.path.dirname(run.log_dir), "*", "state", "run_state.json"))
    assert json.load(open(state))["status"] == "finished"


def test_reward_models_and_reference_are_not_in_ddp(tiny_config):
    """Under DDP (one gloo process here), only the policy's trainable parameters are bucketed for all-reduce, and
    no frozen model's parameter or buffer is synchronized."""
    from lightning.pytorch import Callback

    class RecordDDP(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            # What exists when the step begins (the reward models register some buffers at first use)...
            self.frozen_buffers = {name for name, _ in pl_module.named_buffers() if name.startswith(frozen_names)}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            # ...is out of DDP's buffer sync by the end of it.
            self.ignored = set(trainer.strategy.model.parameters_to_ignore)
            self.bucketed = trainer.strategy.model._get_ddp_logging_data()

    frozen_names = ("whisper_model.", "_eval_speaker_verification_model.", "_reference_model.", "_codec_model.")
    probe = RecordDDP()
    run = EASY_ONLINE_PO.run(
        tiny_config("easy_online_po_tiny", "trainer.strategy=ddp_find_unused_parameters_true", "trainer.max_steps=2"),
        callbacks=[probe],
    )
    frozen = tuple(f"{name}." for name in run.model.frozen_submodules())
    assert set(frozen) == set(frozen_names) - {"_codec_model."}
    policy = [p for name, p in run.model.named_parameters() if not name.startswith(frozen) and p.requires_grad]
    assert probe.bucketed["num_parameter_tensors"] == len(policy)
    assert probe.bucketed["total_parameter_size_bytes"] == sum(p.numel() * p.element_size() for p in policy)
    assert "_eval_speaker_verification_model.encoder.seq_range" in probe.frozen_buffers  # registered at step 1
    assert probe.frozen_buffers <= probe.ignored


@pytest.mark.multiprocess
def test_two_processes_with_the_nemo_reward_for_three_steps(tiny, tmp_path):
    """Two real processes (DDP over gloo) from the command line, past step 2 (where DDP's buffer sync fails on
    NeMo ASR's inference-tensor buffer unless it is kept out)."""
    args = [
        "--config-name",
        "easy_online_po_tiny",
        f"tiny_root={tiny.root}",
        f"exp_manager.exp_dir={tmp_path / 'runs'}",
        "trainer.devices=2",
        "trainer.max_steps=3",
        "model.reward_asr_model=nemo",
    ]
    result = run_recipe("easy_online_po.py", *args, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    [state] = glob.glob(str(tmp_path / "runs" / "tiny_easy_online_po" / "*" / "state" / "run_state.json"))
    assert '"global_step": 3' in open(state).read()
    memory = os.path.join(os.path.dirname(os.path.dirname(state)), "memory")
    assert sorted(os.listdir(memory)) == ["rank0.jsonl", "rank1.jsonl", "step_anatomy.png"]


@pytest.mark.slow  # a subprocess: NeMo's import and the build again
def test_the_readme_command_runs_a_step_from_the_command_line(tiny, tmp_path):
    result = run_recipe(
        "easy_online_po.py",
        "--config-name",
        "easy_online_po_tiny",
        f"tiny_root={tiny.root}",
        f"exp_manager.exp_dir={tmp_path / 'runs'}",
        "+whisper.dtype=bf16",
        cwd=tmp_path,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert "easy_online_po finished" in result.stdout


@pytest.mark.parametrize(
    ("override", "key", "allowed"),
    [
        ("+model.reward_asr_model_name=nvidia/parakeet-ctc-1.1b", "model.reward_asr_model_name", "nemo_asr.pretrained"),
        ("+model.speaker_verification_model_name=titanet_small", "model.speaker_verification_model_name", "speaker"),
        ("trainer.gradient_clip_val=1.0", "trainer.gradient_clip_val", "model.max_grad_norm"),
        ("model.use_utmos=true", "model.use_utmos", "UTMOSv2"),
        ("model.reward_asr_model=parakeet", "model.reward_asr_model", "nemo, whisper"),
        ("+model.n_generation_per_item=4", "model.n_generation_per_item", "n_generations_per_item"),
        ("+whisper.dtype=fp8", "whisper.dtype", "auto"),
    ],
)
def test_bad_values_are_refused_before_any_model_is_built(tiny_config, tmp_path, override, key, allowed):
    with pytest.raises(ConfigError, match=rf"^{key}=") as refused:
        EASY_ONLINE_PO.parse(tiny_config("easy_online_po_tiny", override))
    assert allowed in str(refused.value)
    assert not (tmp_path / "runs").exists()


def test_nemos_ctc_checkpoint_through_the_rnnt_class_loads_as_ctc(tiny):
    """NeMo's EasyMagpieTTS loads `nvidia/parakeet-ctc-0.6b` with EncDecRNNTBPEModel.from_pretrained. It loads: NeMo
    instantiates the class the checkpoint names (`target`), so the model is the CTC class despite the call."""
    import nemo.collections.asr as nemo_asr

    model = nemo_asr.models.EncDecRNNTBPEModel.restore_from(tiny.nemo_asr, map_location="cpu")
    assert type(model).__name__ == "EncDecCTCModel"
    assert not isinstance(model, nemo_asr.models.EncDecRNNTBPEModel)


def test_validation_scores_with_whisper_through_the_working_helper(tiny_config):
    """NeMo's validation step (always on in its PO class) transcribes with the helper that fails under
    transformers 5; here it runs, and writes its clips and metrics."""
    run = EASY_ONLINE_PO.run(
        tiny_config(
            "easy_online_po_tiny",
            "trainer.max_steps=1",
            "trainer.limit_val_batches=1",
            "trainer.val_check_interval=1",
        )
    )
    metrics = glob.glob(os.path.join(run.log_dir, "val_audios", "*_metrics.json"))
    assert len(metrics) == 2  # one validation batch of 2
    assert {"cer", "pred_transcript"} <= set(json.load(open(metrics[0])))


def test_a_stopped_run_resumes_to_its_step_budget(tiny_config):
    """The run lifecycle is the MagpieTTS stages' (StageRun): a finished budget extended with `resume=` continues
    from the saved checkpoint, optimizer state included (manual optimization)."""
    first = EASY_ONLINE_PO.run(tiny_config("easy_online_po_tiny", "trainer.max_steps=1"))
    folder = os.path.dirname(first.log_dir) if os.path.basename(first.log_dir) == "version_0" else first.log_dir
    again = EASY_ONLINE_PO.run(tiny_config("easy_online_po_tiny", "trainer.max_steps=2", f"resume={folder}"))
    assert again.trainer.global_step == 2
    state = json.load(open(os.path.join(folder, "state", "run_state.json")))
    assert (state["status"], state["global_step"]) == ("finished", 2)


@pytest.mark.parametrize("reward_asr", ["whisper", "nemo"])
def test_rollout_clips_stay_in_memory_unless_files_are_asked_for(tiny_config, reward_asr):
    """`model.rollout_audio_files: false` (the default): no wav per rollout or context clip (NeMo writes them to
    <log_dir>/online_po_audios and reads them back); equal rewards either way are tests/test_parity_nemo_easy.py's
    (ours in memory, NeMo's class with its files)."""
    written = {}
    for files in (False, True):
        run = EASY_ONLINE_PO.run(
            tiny_config(
                "easy_online_po_tiny",
                f"model.reward_asr_model={reward_asr}",
                f"model.rollout_audio_files={files}",
                "trainer.max_steps=1",
                f"name=files_{files}",
            )
        )
        audio_dir = os.path.join(run.log_dir, "online_po_audios")
        written[files] = sorted(os.listdir(audio_dir)) if os.path.isdir(audio_dir) else []
    assert not written[False]
    assert len([name for name in written[True] if name.startswith("generated_")]) == 4
    assert [name for name in written[True] if name.startswith("reference_context")]
