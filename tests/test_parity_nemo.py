"""NeMo 3.0.0's PO classes next to ours, from one config and one seed, on the tiny fixtures (tests/parity_harness.py).

Where ours matches NeMo, equality is asserted: losses, KL, rewards, the per-item metrics JSON and a checksum of the
trained weights, step by step. Where ours differs on purpose, the difference is asserted, and so is the switch that
gives NeMo's numbers back. On a NeMo upgrade these tests say which copied lines drifted."""

from __future__ import annotations

import json
import os

import pytest
import torch
from magpie_testing import stage_configs
from nemo.collections.tts.models import magpietts_preference_optimization as upstream
from omegaconf import open_dict
from parity_harness import assert_same_runs, generate, redirect_nemo_hub, train

from nemo_ext.models import MagpieTTSOnlinePO
from nemo_ext.stages import OFFLINE_PO_DATAGEN, OFFLINE_PO_DPO, ONLINE_PO
from nemo_ext.whisper_asr import upstream_uses_working_transcription

pytestmark = pytest.mark.e2e

GRPO_LOGGED = ("train_loss", "train_kl_loss", "train_mean_reward", "train_std_reward")
# NeMo's MagpieTTS configs train with dropout 0.1 and drop the context for 10% of the batches.
NEMO_TRAINING_NOISE = {
    "cfg_unconditional_prob": 0.1,
    "encoder.p_dropout": 0.1,
    "decoder.p_dropout": 0.1,
    "context_encoder.p_dropout": 0.1,
}


def grpo_config(tiny_config, *overrides, noise: bool = False):
    cfg, model_cfg = stage_configs(ONLINE_PO, tiny_config("online_po_tiny", "trainer.max_steps=2", *overrides))
    if noise:
        with open_dict(model_cfg):
            for key, value in NEMO_TRAINING_NOISE.items():
                model_cfg.merge_with_dotlist([f"{key}={value}"])
    return cfg, model_cfg


def assert_same_steps(ours, nemo, logged=GRPO_LOGGED, metrics: bool = True):
    assert_same_runs(ours, nemo, logged, metrics)


@pytest.mark.parametrize(
    ("overrides", "noise"),
    [
        (("model.reward_asr_model=nemo", "model.reference_policy_mode=train"), False),
        (("model.reward_asr_model=nemo", "model.reference_free=true", "model.loss_type=dr_grpo"), False),
        # Without a reference, NeMo's training noise leaves nothing to differ on.
        (("model.reward_asr_model=nemo", "model.reference_free=true"), True),
    ],
    ids=["nemo-reward", "nemo-reward-reference-free-dr_grpo", "nemo-reward-reference-free-nemo-dropout"],
)
def test_grpo_matches_nemo(tiny_config, tiny, tmp_path, monkeypatch, overrides, noise):
    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg = grpo_config(tiny_config, *overrides, noise=noise)
    ours = train(MagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "ours")
    nemo = train(upstream.MagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo")
    assert_same_steps(ours, nemo)


WHISPER_CASES = [
    (("model.reward_asr_model=whisper", "model.reference_policy_mode=train"), True),
    (("model.reward_asr_model=whisper", "model.reference_free=true", "model.loss_type=dr_grpo"), False),
]


@pytest.mark.parametrize(
    ("overrides", "noise"), WHISPER_CASES, ids=["whisper-reward-nemo-dropout", "whisper-reward-reference-free-dr_grpo"]
)
def test_grpo_with_whisper_reward_matches_nemo_given_a_transcription_that_works(
    tiny_config, tiny, tmp_path, monkeypatch, overrides, noise
):
    """NeMo's Whisper helper fails under transformers 5 (no switch restores a crash). With our helper swapped into
    NeMo's module, NeMo's class gives our numbers: the rest of the Whisper reward path is NeMo's, unchanged."""
    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg = grpo_config(tiny_config, *overrides, noise=noise)
    with pytest.raises(ValueError, match="Whisper expects the mel input features to be of length 3000"):
        train(upstream.MagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo_as_shipped", steps=1)
    ours = train(MagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "ours")
    with upstream_uses_working_transcription(batch_size=None):
        nemo = train(upstream.MagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo")
    assert_same_steps(ours, nemo)
    # Same numbers, but NeMo's optimizer also holds the frozen reward models' parameters (Whisper's all of them:
    # NeMo never freezes it). Ours holds the policy's trainable parameters only.
    extra = set(nemo.optimizer_parameters) - set(ours.optimizer_parameters)
    assert set(ours.optimizer_parameters) < set(nemo.optimizer_parameters)
    assert {name.split(".")[0] for name in extra} <= {
        "whisper_model",
        "eval_speaker_verification_model",
        "_reference_model",
    }
    assert {n for n in extra if n.startswith("whisper_model.")} == {
        f"whisper_model.{n}" for n, _ in ours.model.whisper_model.named_parameters()
    }


def test_reference_policy_mode_under_nemo_training_noise(tiny_config, tiny, tmp_path, monkeypatch, record_property):
    """Dropout 0.1 and cfg_unconditional_prob 0.1, NeMo's MagpieTTS training values. NeMo runs the reference in
    train mode with random draws of its own: at step 1, where policy and reference weights are equal, its KL is
    dropout noise. Ours (`matched`) replays the policy's draws: KL exactly 0 at step 1. `train` is NeMo's,
    bit for bit; `eval` runs the reference without dropout."""
    redirect_nemo_hub(monkeypatch, tiny)
    runs = {}
    for mode in ("matched", "train", "eval"):
        cfg, model_cfg = grpo_config(
            tiny_config, "model.reward_asr_model=nemo", f"model.reference_policy_mode={mode}", noise=True
        )
        runs[mode] = train(MagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), mode)
    nemo = train(upstream.MagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo")

    assert_same_steps(runs["train"], nemo)  # the switch that restores NeMo's behaviour
    assert runs["matched"].steps[0].logged["train_kl_loss"] == 0.0
    assert nemo.steps[0].logged["train_kl_loss"] > 0.0
    assert runs["eval"].steps[0].logged["train_kl_loss"] > 0.0
    assert runs["eval"].steps[0].logged["train_kl_loss"] != nemo.steps[0].logged["train_kl_loss"]
    assert len({runs["matched"].weights_sha256, runs["eval"].weights_sha256, nemo.weights_sha256}) == 3
    for mode, run in {**runs, "nemo": nemo}.items():
        record_property(f"step1_kl_{mode}", run.steps[0].logged["train_kl_loss"])
        print(f"[parity] reference_policy_mode={mode}: step-1 KL {run.steps[0].logged['train_kl_loss']:.6g}")


def test_policy_and_reference_drop_the_context_for_the_same_batches(tiny_config, tiny, tmp_path, monkeypatch):
    """With cfg_unconditional_prob 0.5 over 4 steps, NeMo's reference drops the context in other steps than the
    policy (its KL then compares a conditional with an unconditional distribution); `matched` never does."""
    from nemo.collections.tts.models import MagpieTTSModel

    redirect_nemo_hub(monkeypatch, tiny)
    forwards = []
    original_forward, original_dummy = MagpieTTSModel.process_batch, MagpieTTSModel.prepare_dummy_cond_for_cfg

    def forward(self, batch):
        forwards.append({"policy": hasattr(self, "_reference_model"), "dropped": False})
        return original_forward(self, batch)

    def dummy_cond(self, *args, **kwargs):
        forwards[-1]["dropped"] = True
        return original_dummy(self, *args, **kwargs)

    monkeypatch.setattr(MagpieTTSModel, "process_batch", forward)
    monkeypatch.setattr(MagpieTTSModel, "prepare_dummy_cond_for_cfg", dummy_cond)

    def drops(model_class, mode):
        forwards.clear()
        cfg, model_cfg = grpo_config(
            tiny_config, "model.reward_asr_model=nemo", f"model.reference_policy_mode={mode}", "trainer.max_steps=4"
        )
        with open_dict(model_cfg):
            model_cfg.cfg_unconditional_prob = 0.5
        train(model_class, cfg, model_cfg, str(tmp_path), f"{model_class.__name__}_{mode}", steps=4)
        policy = [f["dropped"] for f in forwards if f["policy"]]
        reference = [f["dropped"] for f in forwards if not f["policy"]]
        assert len(policy) == len(reference) == 4
        return policy, reference

    policy, reference = drops(MagpieTTSOnlinePO, "matched")
    assert policy == reference and any(policy) and not all(policy)
    policy, reference = drops(upstream.MagpieTTSModelOnlinePO, "train")
    assert policy != reference


def datagen_config(tiny_config, tmp_path, *overrides):
    from nemo_ext.datagen_layout import ITEM_ID_KEY

    config = tiny_config("offline_po_datagen_tiny", *overrides)
    # The recipe's own items manifest: each line carries its index, which our DataGen writes as `item_id`.
    manifest = OFFLINE_PO_DATAGEN.parse(config).data.manifest("test_manifest")
    rows = [json.loads(line) for line in open(manifest) if line.strip()]
    items = tmp_path / "items.json"
    items.write_text("".join(json.dumps({**row, ITEM_ID_KEY: i}) + "\n" for i, row in enumerate(rows)))
    cfg, model_cfg = stage_configs(OFFLINE_PO_DATAGEN, config, test_manifest=str(items))
    return cfg, model_cfg, len(rows)


@pytest.mark.parametrize("language", ["en", "de"])
def test_datagen_matches_nemo_reseeded_per_batch(tiny_config, tiny, tmp_path, monkeypatch, language):
    """English is scored with the NeMo ASR model, German with Whisper. NeMo transcribes a batch's growing file list
    once per item, ours once per batch: NeMo's extra transcribe() calls draw random numbers, so the two match
    when each batch is reseeded (`model.datagen_seed`; NeMo has no such key: a callback reseeds it alike).
    For German, NeMo's Whisper helper fails under transformers 5 and gets our working one."""
    from nemo.collections.tts.parts.utils import helpers

    from nemo_ext.models import MagpieTTSOfflinePODataGen
    from nemo_ext.whisper_asr import transcribe_with_whisper

    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg, lines = datagen_config(tiny_config, tmp_path, f"model.pref_set_language={language}")
    seed, batch = cfg.model.datagen_seed, cfg.data.batch_size
    ours = generate(MagpieTTSOfflinePODataGen, cfg, model_cfg, str(tmp_path), "ours", seed, None)
    if language != "en":
        with pytest.raises(AssertionError, match="Expected short audio file"):
            generate(
                upstream.MagpieTTSModelOfflinePODataGen, cfg, model_cfg, str(tmp_path), "nemo_as_shipped", seed, batch
            )
        monkeypatch.setattr(helpers, "transcribe_with_whisper_from_filepaths", transcribe_with_whisper)
    nemo = generate(upstream.MagpieTTSModelOfflinePODataGen, cfg, model_cfg, str(tmp_path), "nemo", seed, batch)

    assert sorted(ours) == sorted(nemo) and len(ours) == lines
    for name, metrics in ours.items():
        # The one key ours adds: the manifest line the sample belongs to (the pair stage groups by it).
        assert metrics.pop("item_id") == int(name.split("_")[2])
        assert metrics == nemo[name], name
    if language != "en":
        assert ours != generate(  # without the reseeding, the random streams part after the first batch
            upstream.MagpieTTSModelOfflinePODataGen, cfg, model_cfg, str(tmp_path), "nemo_one_stream", seed, None
        )


@pytest.mark.parametrize("loss_type", ["dpo", "ipo", "rpo", "rpo_sq"])
def test_dpo_matches_nemo(tiny_config, tiny, tmp_path, loss_type):
    """Ours is NeMo's class but for widening cached int16 codes on load: on pairs without cached codes (the tiny
    DPO manifest) every loss type trains to the same weights."""
    from nemo_ext.models import MagpieTTSOfflinePO

    cfg, model_cfg = stage_configs(
        OFFLINE_PO_DPO, tiny_config("offline_po_dpo_tiny", f"model.dpo_loss_type={loss_type}", "trainer.max_steps=2")
    )
    ours = train(MagpieTTSOfflinePO, cfg, model_cfg, str(tmp_path), "ours")
    nemo = train(upstream.MagpieTTSModelOfflinePO, cfg, model_cfg, str(tmp_path), "nemo")
    logged = ("train_loss", "train_pref_loss", "train_sft_loss")
    assert_same_steps(ours, nemo, logged=[key for key in logged if key in ours.steps[0].logged], metrics=False)


def test_dpo_reference_policy_mode_under_nemo_training_noise(tiny_config, tmp_path, record_property):
    """DPO at NeMo's training noise (dropout 0.1, cfg_unconditional_prob 0.1). NeMo freezes its reference once and
    Lightning 2.x keeps it in eval mode while the policy draws dropout and context drops: at step 1, where the weights
    are equal, the implicit rewards are not 0 and the DPO loss is not log 2. Ours (`matched`) runs the reference in
    the policy's mode and replays the policy's draws for each of its forwards: exactly log 2. `eval` is NeMo's, bit
    for bit; `train` draws anew. The reference is out of the optimizer here; NeMo keeps its (frozen) parameters in
    the optimizer's param group."""
    from nemo_ext.models import MagpieTTSOfflinePO

    logged = ("train_loss", "train_pref_loss", "train_sft_loss")
    runs = {}
    for mode in ("matched", "train", "eval"):
        cfg, model_cfg = stage_configs(
            OFFLINE_PO_DPO,
            tiny_config("offline_po_dpo_tiny", "trainer.max_steps=2", f"model.reference_policy_mode={mode}"),
        )
        with open_dict(model_cfg):
            for key, value in NEMO_TRAINING_NOISE.items():
                model_cfg.merge_with_dotlist([f"{key}={value}"])
        runs[mode] = train(MagpieTTSOfflinePO, cfg, model_cfg, str(tmp_path), mode)
    nemo = train(upstream.MagpieTTSModelOfflinePO, cfg, model_cfg, str(tmp_path), "nemo")

    assert_same_steps(runs["eval"], nemo, logged=logged, metrics=False)  # the switch that restores NeMo's
    log_2 = float(-torch.nn.functional.logsigmoid(torch.tensor(0.0)))  # DPO's loss at implicit rewards 0
    assert runs["matched"].steps[0].logged["train_pref_loss"] == log_2
    assert nemo.steps[0].logged["train_pref_loss"] != log_2
    assert log_2 != runs["train"].steps[0].logged["train_pref_loss"] != nemo.steps[0].logged["train_pref_loss"]
    for mode, run in runs.items():
        assert not any(name.startswith("_reference_model.") for name in run.optimizer_parameters), mode
    assert any(name.startswith("_reference_model.") for name in nemo.optimizer_parameters)
    for mode, run in {**runs, "nemo": nemo}.items():
        record_property(f"step1_pref_loss_{mode}", run.steps[0].logged["train_pref_loss"])


def test_a_nemo_grpo_checkpoint_starts_a_run_here_but_does_not_continue_one(tiny_config, tiny, tmp_path, monkeypatch):
    """NeMo's optimizer state covers its unfrozen reward and reference models as well, so it cannot continue
    here. `resume=` refuses it before any model is built, a restore says the same in one line (instead of
    Lightning's "parameter group that doesn't match"), and `init_from_ptl_ckpt` starts a run from its weights."""
    from nemo_ext.errors import ConfigError

    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg = grpo_config(tiny_config, "model.reward_asr_model=nemo")
    nemo = train(upstream.MagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo", steps=1)
    checkpoint = str(tmp_path / "nemo_grpo.ckpt")
    nemo.model.trainer.save_checkpoint(checkpoint)

    with pytest.raises(ConfigError, match=f"init_from_ptl_ckpt={checkpoint}"):
        ONLINE_PO.run(tiny_config("online_po_tiny", "model.reward_asr_model=nemo", f"resume={checkpoint}"))
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made

    with pytest.raises(ConfigError, match=r"^checkpoint=.*init_from_ptl_ckpt") as refused:
        train(MagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "ours", steps=2, ckpt_path=checkpoint)
    assert "\n" not in str(refused.value)

    run = ONLINE_PO.run(
        tiny_config(
            "online_po_tiny", "model.reward_asr_model=nemo", "trainer.max_steps=2", f"init_from_ptl_ckpt={checkpoint}"
        )
    )
    assert run.trainer.global_step == 2


def test_nemo_cannot_initialize_from_a_lightning_checkpoint_under_torch_2_6_and_ours_can(tiny_config, tiny):
    """The tiny checkpoint is written as Lightning writes one for a NeMo model (its config a DictConfig). NeMo's
    `maybe_init_from_pretrained_checkpoint` and its DPO reference load use torch.load's safe default, which refuses
    it; the recipes load it with OmegaConf's classes allowed (nemo_ext/checkpoints.py), the safe loader still on."""
    import pickle

    import torch

    from nemo_ext.checkpoints import configs_in_checkpoints_allowed

    with pytest.raises(pickle.UnpicklingError, match="omegaconf"):
        torch.load(tiny.reference_checkpoint, map_location="cpu")
    with configs_in_checkpoints_allowed():
        loaded = torch.load(tiny.reference_checkpoint, map_location="cpu")
    assert type(loaded["hyper_parameters"]["cfg"]).__name__ == "DictConfig"
    with pytest.raises(pickle.UnpicklingError):  # the allowance ends with the context
        torch.load(tiny.reference_checkpoint, map_location="cpu")
    with configs_in_checkpoints_allowed():
        with configs_in_checkpoints_allowed():
            pass
        torch.load(tiny.reference_checkpoint, map_location="cpu")  # an inner context does not end the outer one


@pytest.mark.parametrize("reward_asr", ["whisper", "nemo"])
def test_rollouts_in_memory_reach_the_reward_models_as_the_files_would(
    reward_asr, tiny_config, tiny, tmp_path, monkeypatch
):
    """`model.rollout_audio_files: false` (the default): the clips are encoded as NeMo's wav files would be and read
    from memory (by Whisper, NeMo ASR and the speaker model). Rewards, transcripts, losses and weights equal those
    of the file round trip (`true`, NeMo's way), and no wav or codes file is written."""
    redirect_nemo_hub(monkeypatch, tiny)
    runs = {}
    for files in (False, True):
        cfg, model_cfg = grpo_config(
            tiny_config, f"model.reward_asr_model={reward_asr}", f"model.rollout_audio_files={files}"
        )
        runs[files] = train(MagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), f"files_{files}")
    assert_same_steps(runs[False], runs[True])
    written = {files: sorted(os.listdir(tmp_path / f"files_{files}" / "version_0" / "audios")) for files in runs}
    assert not [name for name in written[False] if name.endswith((".wav", "_codes.pt"))]
    assert len([name for name in written[True] if name.endswith(".wav")]) == 4
    assert len([name for name in written[False] if name.endswith("_metrics.json")]) == 4
