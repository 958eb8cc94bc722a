"""GRPO's seams in use (a loss type and a reward term registered here), this project's loss loop pinned against
NeMo's class, and what it adds: several updates per rollout batch, TRL's loss types and reward scalings, groups
without reward spread skipped. Each formula is computed in the test as well."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from magpie_testing import stage_configs
from nemo.collections.tts.models import magpietts_preference_optimization as upstream
from parity_harness import assert_same_runs, redirect_nemo_hub, train

from nemo_ext.errors import ConfigError
from nemo_ext.grpo import losses, reward_terms
from nemo_ext.grpo.advantages import easy_magpietts_advantages, magpietts_advantages
from nemo_ext.grpo.losses import LossContext
from nemo_ext.stages import EASY_ONLINE_PO, ONLINE_PO
from nemo_ext.telemetry import phases
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

GRPO_LOGGED = ("train_loss", "train_kl_loss", "train_mean_reward", "train_std_reward")


def offline_run(tmp_path):
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    return read_offline_run(run_file)


# ---- loss types and reward scalings against their formulas ----
def per_token(seed=0, items=5, frames=7):
    generator = torch.Generator().manual_seed(seed)
    loss = torch.randn(items, frames, generator=generator)
    lengths = torch.tensor([7, 3, 5, 1, 6])
    mask = (torch.arange(frames)[None, :] < lengths[:, None]).float()
    return loss, mask, lengths


def test_each_loss_type_is_its_formula():
    loss, mask, lengths = per_token()
    masked = (loss * mask).numpy()
    context = LossContext(max_decoder_steps=11, tokens_per_rank=lambda m: m.sum() / 2)  # as if 2 ranks: half
    expected = {
        "grpo": np.mean([masked[i].sum() / lengths[i] for i in range(5)]),
        "dr_grpo": masked.sum() / (5 * 11),
        "bnpo": masked.sum() / lengths.sum(),
        "dapo": masked.sum() / (lengths.sum() / 2),
    }
    for name, value in expected.items():
        assert float(losses.LOSS_TYPES[name].aggregate(loss, mask, context)) == pytest.approx(float(value), rel=1e-6)


def test_loss_types_each_family_runs():
    assert losses.loss_type_names(losses.MAGPIETTS) == ("grpo", "dr_grpo", "bnpo", "dapo")
    assert losses.loss_type_names(losses.EASY_MAGPIETTS) == ("grpo", "dr_grpo")


@pytest.mark.parametrize("family_advantages", [magpietts_advantages, easy_magpietts_advantages])
def test_each_reward_scaling_is_its_formula(family_advantages):
    rewards = [0.1, 0.5, 0.4, 0.9, 0.9, 0.2]
    groups = np.array(rewards).reshape(2, 3)
    means, stds = groups.mean(axis=1).repeat(3), groups.std(axis=1).repeat(3)
    centered = np.array(rewards) - means
    expected = {
        "group": centered / (stds + 1e-4),
        "batch": centered / (np.std(rewards) + 1e-4),
        "none": centered,
    }
    for scale, values in expected.items():
        assert np.allclose(family_advantages(rewards, 3, scale), values, rtol=1e-12, atol=1e-15), scale


# ---- the loss loop and the advantages, pinned against NeMo's class ----
@pytest.fixture
def loss_run_by_this_project(monkeypatch):
    """The loss-type seam in use: NeMo's grpo registered under another name, so this project's loop runs it."""
    alias = losses.GRPOLossType("grpo_by_this_project", "grpo, by this project's loop", losses.GRPO.aggregate)
    monkeypatch.setitem(losses.LOSS_TYPES, alias.name, alias)
    return alias


@pytest.mark.e2e
@pytest.mark.parametrize(
    "overrides",
    [("model.reference_policy_mode=train",), ("model.reference_free=true",)],
    ids=["with-reference", "reference-free"],
)
def test_this_projects_loss_loop_gives_nemos_numbers(
    tiny_config, tiny, tmp_path, monkeypatch, loss_run_by_this_project, overrides
):
    """NeMo's class with loss_type=grpo next to ours running the same loss through nemo_ext/grpo/policy_loss.py:
    losses, KL, rewards, per-item metrics and weights equal, step by step."""
    from nemo_ext.models import MagpieTTSOnlinePO

    redirect_nemo_hub(monkeypatch, tiny)
    common = ("trainer.max_steps=2", "model.reward_asr_model=nemo", *overrides)
    ours_cfg, ours_model_cfg = stage_configs(
        ONLINE_PO, tiny_config("online_po_tiny", *common, f"model.loss_type={loss_run_by_this_project.name}")
    )
    nemo_cfg, nemo_model_cfg = stage_configs(ONLINE_PO, tiny_config("online_po_tiny", *common))
    ours = train(MagpieTTSOnlinePO, ours_cfg, ours_model_cfg, str(tmp_path), "ours")
    nemo = train(upstream.MagpieTTSModelOnlinePO, nemo_cfg, nemo_model_cfg, str(tmp_path), "nemo")
    assert_same_runs(ours, nemo, GRPO_LOGGED)


@pytest.mark.e2e
@pytest.mark.parametrize(("scale", "family"), [("true", "group"), ("false", "none")])
def test_advantages_computed_here_are_nemos_bit_for_bit(tiny_config, tiny, tmp_path, monkeypatch, scale, family):
    """Our step's advantages (grpo/advantages.py) from NeMo's own rewards give NeMo's own advantages, values and
    dtype: NeMo's class trains here, its reward step recorded."""
    redirect_nemo_hub(monkeypatch, tiny)
    seen = []
    original = upstream.MagpieTTSModelOnlinePO.generate_and_reward

    def recording(self, batch, n, *args, **kwargs):
        output = original(self, batch, n, *args, **kwargs)
        rewards = [item["reward"] for item in output["metrics"]]
        seen.append((torch.tensor(magpietts_advantages(rewards, n, family), device=self.device), output["advantages"]))
        return output

    monkeypatch.setattr(upstream.MagpieTTSModelOnlinePO, "generate_and_reward", recording)
    cfg, model_cfg = stage_configs(
        ONLINE_PO,
        tiny_config(
            "online_po_tiny", "trainer.max_steps=2", "model.reward_asr_model=nemo", f"model.scale_rewards={scale}"
        ),
    )
    train(upstream.MagpieTTSModelOnlinePO, cfg, model_cfg, str(tmp_path), "nemo")
    assert len(seen) == 2
    for recomputed, nemos in seen:
        assert recomputed.dtype == nemos.dtype and torch.equal(recomputed, nemos)


@pytest.mark.e2e
def test_batch_scaling_divides_by_the_batch_std(tiny_config, monkeypatch):
    from nemo_ext.models import MagpieTTSOnlinePO

    seen = []
    original = MagpieTTSOnlinePO.generate_and_reward

    def recording(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        seen.append(output)
        return output

    monkeypatch.setattr(MagpieTTSOnlinePO, "generate_and_reward", recording)
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=1", "model.scale_rewards=batch"))
    [output] = seen
    rewards = np.array([item["reward"] for item in output["metrics"]])
    means = rewards.reshape(-1, 2).mean(axis=1).repeat(2)
    expected = (rewards - means) / (rewards.std() + 1e-4)
    assert np.allclose(output["advantages"].cpu().numpy(), expected, rtol=1e-12)


# ---- several updates per rollout batch ----
@pytest.mark.e2e
def test_two_updates_reuse_one_batch_of_rollouts_against_the_first_updates_log_probs(
    tiny_config, tmp_path, monkeypatch
):
    """num_iterations=2: each rollout batch is generated once and serves two optimizer steps; the first update's
    importance ratio is exactly 1 (NeMo's on-policy update), the second's is not; Lightning counts optimizer steps,
    and the logged rows are labelled by them."""
    from nemo_ext.models import MagpieTTSOnlinePO

    generations = []
    original = MagpieTTSOnlinePO.generate_and_reward

    def counting(self, *args, **kwargs):
        generations.append(self.trainer.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MagpieTTSOnlinePO, "generate_and_reward", counting)
    result = ONLINE_PO.run(tiny_config("online_po_tiny", "model.num_iterations=2", "trainer.max_steps=4"))
    assert result.trainer.global_step == 4
    assert generations == [0, 2]  # one generation per two steps
    run = offline_run(tmp_path)
    assert run.series("learning/importance_ratio_first") == [1.0, 1.0]
    assert all(ratio != 1.0 for ratio in run.series("learning/importance_ratio_last"))
    assert all(0.0 <= value <= 1.0 for value in run.series("learning/clip_ratio"))
    labels = [row["trainer/global_step"] for row in run.history if "train_loss" in row]
    assert labels == [1, 3]


def test_several_updates_need_budgets_in_whole_rollout_batches(tiny_config):
    with pytest.raises(ConfigError, match=r"^trainer\.max_steps=5 is invalid; allowed: -1 or a multiple of model"):
        ONLINE_PO.parse(tiny_config("online_po_tiny", "model.num_iterations=2", "trainer.max_steps=5"))
    with pytest.raises(ConfigError, match=r"every_n_train_steps=10 is invalid; allowed: null or a multiple"):
        ONLINE_PO.parse(tiny_config("online_po_tiny", "model.num_iterations=3", "trainer.max_steps=30"))
    with pytest.raises(ConfigError, match=r"^model\.epsilon_high=0\.1 is invalid; allowed: null or a number >= model"):
        ONLINE_PO.parse(tiny_config("online_po_tiny", "model.epsilon_high=0.1"))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+model.num_iterations=2", r"^model\.num_iterations=2 is invalid; allowed: unset: EasyMagpieTTS GRPO runs"),
        ("+model.skip_zero_std_groups=true", r"^model\.skip_zero_std_groups=True is invalid; allowed: unset"),
        ("model.loss_type=dapo", r"^model\.loss_type='dapo' is invalid; allowed: grpo, dr_grpo$"),
    ],
)
def test_easy_magpietts_refuses_what_its_nemo_step_cannot_do(tiny_config, override, message):
    with pytest.raises(ConfigError, match=message):
        EASY_ONLINE_PO.parse(tiny_config("easy_online_po_tiny", override))


# ---- groups without reward spread ----
@pytest.mark.e2e
def test_groups_without_reward_spread_skip_the_forward_and_backward(tiny_config, tmp_path, monkeypatch):
    """Similarity weight 0: every reward is the (constant) CER reward, every group is without spread. Skipped, the
    policy forward sees one group (kept so every rank takes part in the backward) and the loss is 0."""
    from nemo_ext.models import MagpieTTSOnlinePO

    forward_items = []
    original = MagpieTTSOnlinePO.process_batch

    def counting(self, batch):
        forward_items.append(len(batch["raw_texts"]))
        return original(self, batch)

    monkeypatch.setattr(MagpieTTSOnlinePO, "process_batch", counting)
    overrides = ("model.ssim_reward_weight=0", "trainer.max_steps=2", "model.loss_type=dr_grpo")
    ONLINE_PO.run(tiny_config("online_po_tiny", *overrides, "model.skip_zero_std_groups=true"))
    assert forward_items == [2, 2]  # one group of n=2 instead of 2 groups
    run = offline_run(tmp_path)
    assert run.series("learning/frac_groups_skipped") == [1.0, 1.0]
    assert run.series("train_loss") == [0.0, 0.0]

    forward_items.clear()
    ONLINE_PO.run(tiny_config("online_po_tiny", *overrides, f"exp_manager.exp_dir={tmp_path / 'kept'}"))
    assert forward_items == [4, 4]


@pytest.mark.e2e
def test_skipping_reports_what_it_skipped(tiny_config, tmp_path):
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=3", "model.skip_zero_std_groups=true"))
    run = offline_run(tmp_path)
    assert run.series("learning/frac_groups_skipped") == run.series("learning/frac_reward_zero_std")


# ---- a reward term registered here ----
@pytest.fixture
def brevity_term(monkeypatch):
    """The reward-term seam in use: a term NeMo does not compute (shorter rollouts score higher), timed as its own
    phase, its weight a model key."""
    scored = []

    def score(model, rollouts):
        values = [1.0 - item["codes_len"] / model.max_decoder_steps for item in rollouts.metrics]
        assert len(rollouts.audio_paths) == len(values)
        samples, rate = rollouts.read_audio(rollouts.audio_paths[0])  # the clip is there to be scored
        assert rate > 0 and len(samples) > 0
        scored.append(values)
        return values

    term = reward_terms.RewardTerm(
        name="brevity",
        weight_key="brevity_reward_weight",
        metric="brevity_reward",
        model="none (the rollout's length)",
        phase="brevity",
        families=(losses.MAGPIETTS,),
        score=score,
    )
    monkeypatch.setitem(reward_terms.REWARD_TERMS, term.name, term)
    return scored


@pytest.mark.e2e
def test_a_registered_reward_term_is_scored_weighted_timed_and_logged(tiny_config, tmp_path, monkeypatch, brevity_term):
    from nemo_ext.models import MagpieTTSOnlinePO

    after = []
    original = MagpieTTSOnlinePO.generate_and_reward

    def recording(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        after.append(output)
        return output

    monkeypatch.setattr(MagpieTTSOnlinePO, "generate_and_reward", recording)
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=2", "+model.brevity_reward_weight=0.5"))
    assert len(brevity_term) == len(after) == 2
    for output, scores in zip(after, brevity_term):
        for item, score in zip(output["metrics"], scores):
            assert item["brevity_reward"] == score
            # NeMo's terms (weights 0.5 and 0.5), the brevity term with its weight; 0 where NeMo's length rule cut
            nemo_reward = 0.5 * item["cer_reward"] + 0.5 * item["spk_similarity_reward"]
            assert item["reward"] == pytest.approx(nemo_reward + 0.5 * score if 3 < item["codes_len"] < 425 else 0.0)
    run = offline_run(tmp_path)
    assert len(run.series("learning/reward_brevity_mean")) == 2
    assert len(run.series("time/brevity_s")) == 2  # its phase is declared, timed and logged


def test_a_registered_term_needs_its_weight_and_keeps_the_checks(tiny_config, brevity_term):
    settings = ONLINE_PO.parse(tiny_config("online_po_tiny"))
    assert settings.algorithm.rewards.weights["brevity"] == 0.0  # absent: its default, inactive
    with pytest.raises(ConfigError, match=r"^model\.brevity_reward_weight=-1 is invalid; allowed: a number >= 0"):
        ONLINE_PO.parse(tiny_config("online_po_tiny", "+model.brevity_reward_weight=-1"))
    active = ONLINE_PO.parse(tiny_config("online_po_tiny", "+model.brevity_reward_weight=0.2")).algorithm
    assert [t.name for t in active.active_reward_terms()] == ["cer", "ssim", "brevity"]
    assert phases.REWARD in phases.GRPO_PHASES
