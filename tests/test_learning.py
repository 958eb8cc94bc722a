"""Learning is a test too: the tiny GRPO default raises its reward, by a margin that a flipped or zeroed advantage
does not reach; every learning-health figure reaches the offline W&B run; "no learning signal" is said once."""

from __future__ import annotations

import statistics

import pytest

from nemo_ext.models import MagpieTTSOnlinePO
from nemo_ext.stages import EASY_ONLINE_PO, OFFLINE_PO_DPO, ONLINE_PO
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.e2e

# Mean reward of the last 10 of the tiny default's 40 steps minus that of the first 10. Measured
# (benchmarks/learning.md): +0.08 to +0.12 for seeds 1, 2, 3 and 1234; with NeMo's advantages negated -0.04 to -0.17,
# zeroed -0.03 to +0.03 (the KL term and sampling noise alone).
MARGIN = 0.05
WINDOW = 10

GRPO_FIGURES = {
    "learning/reward_mean",
    "learning/reward_std",
    "learning/reward_cer_mean",
    "learning/reward_cer_std",
    "learning/reward_ssim_mean",
    "learning/reward_ssim_std",
    "learning/cer_mean",
    "learning/similarity_mean",
    "learning/frac_reward_zero_std",
    "learning/frac_groups_invalid",
    "learning/rollout_frames_mean",
    "learning/rollout_clipped_ratio",
    "learning/kl",
    "learning/entropy",
    "learning/grad_norm",
}
DPO_FIGURES = {
    "learning/dpo_reward_accuracy",
    "learning/dpo_reward_margin",
    "learning/dpo_reward_chosen",
    "learning/dpo_reward_rejected",
}


def offline_run(tmp_path):
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    return read_offline_run(run_file)


def reward_rise(series: list[float]) -> float:
    assert len(series) == 40
    return statistics.mean(series[-WINDOW:]) - statistics.mean(series[:WINDOW])


def with_advantages(monkeypatch, change):
    """The step's reward step, its advantages changed on the way out (a mutation of the advantage computation)."""
    original = MagpieTTSOnlinePO.generate_and_reward

    def mutated(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        output["advantages"] = change(output["advantages"])
        return output

    monkeypatch.setattr(MagpieTTSOnlinePO, "generate_and_reward", mutated)


@pytest.mark.slow
def test_the_tiny_default_learns_and_a_broken_advantage_does_not(tiny_config, tmp_path, monkeypatch, caplog):
    """The tiny default (40 steps, seed 1234) raises its mean reward by more than MARGIN, and says so at the end;
    the same run with the advantage's sign flipped, or with every advantage 0 (as when every reward is equal),
    does not."""
    caplog.set_level("INFO")
    ONLINE_PO.run(tiny_config("online_po_tiny", "telemetry.enabled=false"))
    rewards = offline_run(tmp_path).series("learning/reward_mean")
    assert reward_rise(rewards) > MARGIN, rewards
    first, last = statistics.mean(rewards[:WINDOW]), statistics.mean(rewards[-WINDOW:])
    expected = f"Learning: mean reward {first:.3f} over the first 10 steps -> {last:.3f} over the last 10 (40 steps"
    assert any(r.getMessage().startswith(expected) for r in caplog.records), expected

    for name, change in (("flipped", lambda a: -a), ("zeroed", lambda a: a * 0)):
        with monkeypatch.context() as patch:
            with_advantages(patch, change)
            exp_dir = tmp_path / name
            ONLINE_PO.run(tiny_config("online_po_tiny", "telemetry.enabled=false", f"exp_manager.exp_dir={exp_dir}"))
        [run_file] = find_offline_runs(str(exp_dir))
        mutated = read_offline_run(run_file).series("learning/reward_mean")
        assert reward_rise(mutated) < MARGIN, (name, mutated)


@pytest.mark.parametrize("stage", [ONLINE_PO, EASY_ONLINE_PO], ids=lambda s: s.name)
def test_every_grpo_learning_figure_reaches_wandb_and_agrees_with_nemos_own(tiny_config, tmp_path, stage):
    stage.run(tiny_config(f"{stage.name}_tiny", "trainer.max_steps=3"))
    run = offline_run(tmp_path)
    logged = {key for row in run.history for key in row}
    assert GRPO_FIGURES <= logged, sorted(GRPO_FIGURES - logged)
    for key in GRPO_FIGURES:
        assert len(run.series(key)) == 3, key
    # Equal group sizes: the mean over items is NeMo's mean of group means; the KL is NeMo's own.
    assert run.series("learning/reward_mean") == pytest.approx(run.series("train_mean_reward"), rel=1e-5)
    assert run.series("learning/reward_std") == pytest.approx(run.series("train_std_reward"), rel=1e-5)
    assert run.series("learning/kl") == pytest.approx(run.series("train_kl_loss"), rel=1e-5, abs=1e-9)
    for key in ("learning/frac_reward_zero_std", "learning/frac_groups_invalid", "learning/rollout_clipped_ratio"):
        assert all(0.0 <= value <= 1.0 for value in run.series(key)), key
    # The tiny default has a learning signal: rewards differ within most groups.
    assert statistics.mean(run.series("learning/frac_reward_zero_std")) < 0.5
    assert min(run.series("learning/reward_ssim_std")) > 0.0
    assert all(value > 0 for value in run.series("learning/grad_norm"))
    if stage is EASY_ONLINE_PO:
        assert run.series("learning/entropy") == pytest.approx(run.series("train_entropy"), rel=1e-5)


def test_dpo_logs_its_implicit_reward_accuracy_and_margin(tiny_config, tmp_path):
    OFFLINE_PO_DPO.run(tiny_config("offline_po_dpo_tiny", "trainer.max_steps=3"))
    run = offline_run(tmp_path)
    logged = {key for row in run.history for key in row}
    assert DPO_FIGURES <= logged, sorted(DPO_FIGURES - logged)
    accuracy, margin = run.series("learning/dpo_reward_accuracy"), run.series("learning/dpo_reward_margin")
    chosen, rejected = run.series("learning/dpo_reward_chosen"), run.series("learning/dpo_reward_rejected")
    assert len(accuracy) == len(margin) == 3
    assert all(0.0 <= value <= 1.0 for value in accuracy)
    assert margin == pytest.approx([c - r for c, r in zip(chosen, rejected)], abs=1e-7)
    assert margin[0] == 0.0  # step 1: the policy is the reference, every implicit reward is 0
    assert margin[-1] != 0.0


def test_no_learning_signal_is_said_once_and_logged(tiny_config, tmp_path):
    """With the similarity weight at 0 every reward is the CER reward, and the tiny Whisper hears nothing: all
    rewards are equal. After `no_signal_warning_steps` such steps the run says so, once, naming the causes."""
    # NeMo's logger replaces warnings.showwarning when first imported: let warnings reach Python's machinery.
    from nemo.utils import logging as nemo_logging

    nemo_logging.captureWarnings(False)
    with pytest.warns(UserWarning) as caught:
        ONLINE_PO.run(
            tiny_config(
                "online_po_tiny",
                "model.ssim_reward_weight=0",
                "trainer.max_steps=4",
                "telemetry.no_signal_warning_steps=2",
            )
        )
    run = offline_run(tmp_path)
    assert run.series("learning/frac_reward_zero_std") == [1.0, 1.0, 1.0, 1.0]
    assert run.series("learning/no_signal_warning") == [1.0]
    [row] = [row for row in run.history if "learning/no_signal_warning" in row]
    assert row["trainer/global_step"] == 1  # logged with the second step (0-based), the first that qualifies
    messages = [str(w.message) for w in caught if "no learning signal" in str(w.message)]
    assert len(messages) == 1
    assert "model.n_generations_per_item too small (it is 2)" in messages[0]
    assert "model.mean_cer_dataset" in messages[0]


def test_the_stochastic_section_rows_by_hand():
    from nemo_ext_tools.learning_benchmark import Curve, Experiment, stochastic_rows

    experiment = Experiment("mu=1, dropout on", "online_po", extra_series=("sampling/x",))
    reward = "learning/reward_mean"
    curves = [
        Curve(experiment, 1, {reward: [0.1, 0.2, 0.3, 0.4], "sampling/x": [1.0, 2.0]}),
        Curve(experiment, 2, {reward: [0.2, 0.2, 0.4, 0.6], "sampling/x": [3.0]}),
    ]
    # quarters of 4 steps: one step. Seed 1: 0.1 -> 0.4 (+0.3); seed 2: 0.2 -> 0.6 (+0.4). sampling/x: (1+2+3)/3.
    [row] = stochastic_rows(curves, ("sampling/x", "absent"))
    assert row == "| mu=1, dropout on | 4 | 0.150 | 0.500 | +0.350 ± 0.050 | +0.300, +0.400 | 2.000 | - |"
