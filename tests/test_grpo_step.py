"""MagpieTTS GRPO's step is this project's (nemo_ext/models/grpo_step.py): NeMo's step bodies never run, no name of
NeMo's modules is pointed elsewhere while it runs, and its reward arithmetic is NeMo's (by hand here; against
NeMo's class in tests/test_parity_nemo.py)."""

from __future__ import annotations

import ast
import inspect

import pytest
from nemo.collections.tts.models import magpietts_preference_optimization as upstream
from nemo.collections.tts.parts.utils import helpers

from nemo_ext.grpo.magpietts_rewards import RewardScale, group_validities, rollout_reward
from nemo_ext.stages import ONLINE_PO

SCALE = RewardScale(
    mean_cer_dataset=0.1,
    mean_ssim_dataset=0.6,
    best_ssim_achievable=0.9,
    cer_weight=0.5,
    ssim_weight=0.5,
    pesq_weight=0.0,
    use_pesq=False,
)


def item(cer, similarity, frames=50):
    return {"cer_gt": cer, "spk_similarity": similarity, "pesq": 0.0, "codes_len": frames}


def test_the_reward_by_hand():
    # CER 0.05 is halfway from the dataset's mean (0.1, reward 0.5) to 0 (reward 1): 0.75. Similarity 0.75 is
    # halfway from the mean (0.6) to the best achievable (0.9): 0.75. Weights 0.5 and 0.5: 0.75.
    good = item(0.05, 0.75)
    rollout_reward(good, SCALE)
    assert good["cer_reward"] == pytest.approx(0.75) and good["spk_similarity_reward"] == pytest.approx(0.75)
    assert good["reward"] == pytest.approx(0.75)
    # CER 0.55: halfway from 0.1 to 1, reward 0.25; similarity 0.3: halfway from 0.6 to 0, reward 0.25.
    poor = item(0.55, 0.3)
    rollout_reward(poor, SCALE)
    assert poor["reward"] == pytest.approx(0.25)
    # Clamped: CER above 1 counts as 1 (reward 0), similarity above the best as the best (reward 1).
    clamped = item(3.0, 0.99)
    rollout_reward(clamped, SCALE)
    assert (clamped["cer_reward"], clamped["spk_similarity_reward"]) == (0.0, 1.0)
    for frames in (3, 425, 500):  # NeMo's length rule: a rollout this short or this long gets 0
        cut = item(0.0, 0.9, frames)
        rollout_reward(cut, SCALE)
        assert cut["reward"] == 0.0 and cut["cer_reward"] == 1.0


def test_a_group_whose_best_or_worst_cer_is_above_its_threshold_is_left_out():
    metrics = [item(0.2, 0.6), item(0.6, 0.6), item(0.3, 0.6), item(0.4, 0.6), item(0.95, 0.6), item(0.1, 0.6)]
    assert group_validities([dict(m) for m in metrics], 2, SCALE, 1.0, 1.0) == [True] * 6
    # best CERs per group: 0.2, 0.3, 0.1; worst: 0.6, 0.4, 0.95
    assert group_validities([dict(m) for m in metrics], 2, SCALE, 0.25, 1.0) == [True, True, False, False, True, True]
    assert group_validities([dict(m) for m in metrics], 2, SCALE, 1.0, 0.9) == [True, True, True, True, False, False]


STEP_MODULES = (
    "nemo_ext.models.grpo_step",
    "nemo_ext.models.online_po",
    "nemo_ext.models.policy_updates",
    "nemo_ext.models.offline_po_datagen",
    "nemo_ext.models.rollout_decoding",
    "nemo_ext.rollout.generate",
    "nemo_ext.rollout.incremental_decoder",
    "nemo_ext.rollout.sampling",
)
SWAPPERS = {"names_replaced", "rollouts_in_memory", "upstream_uses_working_transcription", "ModuleWith"}


@pytest.mark.parametrize("module", STEP_MODULES)
def test_the_magpietts_step_and_datagen_import_no_name_swapping(module):
    import importlib

    tree = ast.parse(inspect.getsource(importlib.import_module(module)))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not imported & SWAPPERS, imported & SWAPPERS


@pytest.mark.e2e
def test_a_grpo_step_runs_none_of_nemos_step_bodies_and_leaves_nemos_names_alone(tiny_config, monkeypatch):
    """A real GRPO run (Whisper reward, reference policy). Mid-step (while the speaker model embeds the clips) NeMo's
    module names are their own objects; NeMo's training_step, process_batch_online_po, generate_and_reward and
    infer_batch are never entered."""
    from nemo.collections.tts.models import MagpieTTSModel

    seen_mid_step, entered = [], []

    def snapshot():
        return {
            "po.sf": upstream.sf,
            "po.torch": upstream.torch,
            "po.transcribe_with_whisper_from_filepaths": upstream.transcribe_with_whisper_from_filepaths,
            "po.get_speaker_embeddings_from_filepaths": upstream.get_speaker_embeddings_from_filepaths,
            "helpers.sf": helpers.sf,
        }

    originals = snapshot()
    for cls, name in [
        (upstream.MagpieTTSModelOnlinePO, "training_step"),
        (upstream.MagpieTTSModelOnlinePO, "process_batch_online_po"),
        (upstream.MagpieTTSModelOnlinePO, "generate_and_reward"),
        (MagpieTTSModel, "infer_batch"),
    ]:
        original = getattr(cls, name)

        def entering(self, *args, _name=name, _original=original, **kwargs):
            entered.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, entering)

    class Watch:
        def on_train_start(self, trainer, model):
            # NeMo calls the speaker model's forward directly; its encoder goes through __call__ (hooks fire)
            model.eval_speaker_verification_model.encoder.register_forward_hook(
                lambda *_: seen_mid_step.append(snapshot())
            )

    import lightning.pytorch as pl

    watch = type("WatchCallback", (Watch, pl.Callback), {})()
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=2", "model.reward_asr_model=whisper"), [watch])
    assert len(seen_mid_step) >= 2  # the rollouts' and the targets' embeddings, each step
    for names in seen_mid_step:
        assert names == originals
    assert entered == []
