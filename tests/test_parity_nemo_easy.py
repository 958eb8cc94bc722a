"""EasyMagpieTTS GRPO next to NeMo 3.0.0's own EasyMagpieTTSModelOnlinePO: one config (the recipe's), one seed, the
tiny fixtures, a real Lightning Trainer (tests/parity_harness.py). Every difference is named in the test that shows
it; the step itself is NeMo's."""

from __future__ import annotations

import pytest
from magpie_testing import stage_configs
from nemo.collections.tts.models import easy_magpietts_preference_optimization as upstream
from parity_harness import assert_same_runs, redirect_nemo_hub, train

from nemo_ext.models import EasyMagpieTTSOnlinePO
from nemo_ext.stages import EASY_ONLINE_PO
from nemo_ext.whisper_asr import upstream_uses_working_transcription

pytestmark = pytest.mark.e2e

LOGGED = (
    "train_loss",
    "train_po_loss",
    "train_kl_loss",
    "train_entropy",
    "train_mean_reward",
    "train_std_reward",
)


def grpo_config(tiny_config, *overrides):
    return stage_configs(EASY_ONLINE_PO, tiny_config("easy_online_po_tiny", "trainer.max_steps=2", *overrides))


def assert_same_steps(ours, nemo):
    # EasyMagpieTTS writes no per-item metrics files.
    assert_same_runs(ours, nemo, LOGGED, metrics=False)
    # Something was learned from (advantages not all zero), so equal weights mean equal updates.
    assert any(step.logged["train_std_reward"] > 0 for step in ours.steps)


@pytest.mark.parametrize(
    "overrides",
    [
        ("model.reward_asr_model=nemo",),
        ("model.reward_asr_model=nemo", "model.reference_free=true", "model.loss_type=dr_grpo"),
    ],
    ids=["nemo-reward", "nemo-reward-reference-free-dr_grpo"],
)
def test_easy_grpo_matches_nemo(tiny_config, tiny, tmp_path, monkeypatch, overrides):
    """NeMo's weights go in through torch's load_state_dict where NeMo's own cannot take them (next test)."""
    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg = grpo_config(tiny_config, *overrides)
    ours = train(EasyMagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "ours")
    nemo = train(upstream.EasyMagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo", plain_init=True)
    assert_same_steps(ours, nemo)
    if "model.reference_free=true" not in overrides:
        assert ours.steps[1].logged["train_kl_loss"] > 0  # the reference took part


def test_nemo_easy_grpo_with_a_reference_cannot_start_from_a_checkpoint(tiny_config, tiny, tmp_path, monkeypatch):
    """NeMo 3.0.0: EasyMagpieTTS's load_state_dict loads every child strictly from its slice of the checkpoint,
    skipping only the names its state_dict leaves out; the frozen reference policy is not among them, gets an empty
    slice and fails, so `init_from_ptl_ckpt` (or any load of a checkpoint) fails once a reference exists. Ours
    skips every frozen model (reward models and reference)."""
    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg = grpo_config(tiny_config, "model.reward_asr_model=nemo", "trainer.max_steps=1")
    with pytest.raises(RuntimeError, match=r"Missing key\(s\) in state_dict"):
        train(upstream.EasyMagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo_as_shipped", steps=1)
    ours = train(EasyMagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "ours", steps=1)
    assert len(ours.steps) == 1


def test_easy_grpo_with_whisper_reward_matches_nemo_given_a_transcription_that_works(
    tiny_config, tiny, tmp_path, monkeypatch
):
    """NeMo's class calls the Whisper helper that fails under transformers 5; with our helper in its module, its
    numbers are ours. Differences that leave the numbers alone: NeMo's optimizer holds nothing of the reward models
    here (it excludes them by name), but NeMo leaves Whisper in train mode after its first step."""
    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg = grpo_config(tiny_config, "model.reward_asr_model=whisper")
    with pytest.raises(ValueError, match="Whisper expects the mel input features to be of length 3000"):
        train(upstream.EasyMagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo_as_shipped", 1, plain_init=True)
    ours = train(EasyMagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "ours")
    with upstream_uses_working_transcription(batch_size=None, module=upstream):
        nemo = train(upstream.EasyMagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo", plain_init=True)
    assert_same_steps(ours, nemo)
    assert set(ours.optimizer_parameters) == set(nemo.optimizer_parameters)
    assert nemo.model.whisper_model.training and not ours.model.whisper_model.training
    assert ours.model.whisper_model.dtype == nemo.model.whisper_model.dtype  # auto: the checkpoint's own (fp16)


def test_nemo_easy_grpo_cannot_read_a_lightning_checkpoint_as_its_reference_under_torch_2_6(
    tiny_config, tiny, monkeypatch
):
    """NeMo's __init__ reads the reference checkpoint with torch.load's safe default, which refuses the OmegaConf
    config a Lightning checkpoint of a NeMo model pickles. Ours allows those classes for that load only."""
    import copy
    import pickle

    redirect_nemo_hub(monkeypatch, tiny)
    cfg, model_cfg = grpo_config(tiny_config, "model.reward_asr_model=nemo")
    model_cfg.train_ds = model_cfg.validation_ds = None  # no trainer here: the datasets are not the point
    with pytest.raises(pickle.UnpicklingError, match="Unsupported global"):
        upstream.EasyMagpieTTSModelOnlinePO(cfg=copy.deepcopy(model_cfg))
    assert EasyMagpieTTSOnlinePO(cfg=copy.deepcopy(model_cfg))._reference_model is not None
