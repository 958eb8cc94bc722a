"""Group-normalized advantages from per-rollout rewards, as NeMo 3.0.0 computes them, and TRL's reward scalings.

NeMo's reward steps compute advantages themselves; these functions recompute them when this project changes a
reward (a reward term NeMo does not compute) or the scaling (`model.scale_rewards: batch`). For `group` and `none`
they reproduce NeMo's arithmetic operation for operation, Python and NumPy types included, so a recomputation from
NeMo's own rewards gives NeMo's advantages bit for bit (tests/test_grpo_seams.py)."""

from __future__ import annotations

import numpy as np

SCALINGS = ("group", "batch", "none")  # TRL's scale_rewards; NeMo's boolean true = group, false = none
EPSILON = 1e-4  # NeMo's (and TRL's) guard against a zero std


def scaling(value) -> str:
    """`model.scale_rewards` as one of SCALINGS (NeMo's boolean keeps working)."""
    if value is True:
        return "group"
    if value is False:
        return "none"
    return value


def _scaled(advantage, scale: str, group_std, batch_std):
    """Both families' scaling of one centred reward: by the group's std, the batch's, or not at all."""
    if scale == "group":
        return advantage / (group_std + EPSILON)
    if scale == "batch":
        return advantage / (batch_std + EPSILON)
    return advantage


def magpietts_advantages(rewards: list[float], group_size: int, scale: str, batch_rewards=None) -> list:
    """MagpieTTSModelOnlinePO.generate_and_reward's arithmetic; `batch` divides by the std of `batch_rewards`: the
    whole batch's, every rank's (across_ranks.rewards_of_all_ranks); the rank's own when None."""
    batch_std = np.std(rewards if batch_rewards is None else batch_rewards) if scale == "batch" else None
    advantages = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        mean_reward = 0
        for reward in group:
            mean_reward += reward
        mean_reward /= group_size
        std_reward = np.std(group)
        advantages.extend(_scaled(reward - mean_reward, scale, std_reward, batch_std) for reward in group)
    return advantages


def easy_magpietts_advantages(rewards: list[float], group_size: int, scale: str, batch_rewards=None) -> list[float]:
    """EasyMagpieTTSModelOnlinePO.generate_and_reward's arithmetic (after its group-minimum length penalty);
    `batch_rewards` as in magpietts_advantages."""
    batch_std = float(np.std(rewards if batch_rewards is None else batch_rewards)) if scale == "batch" else None
    advantages = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        mean_reward = float(np.mean(group))
        std_reward = float(np.std(group))
        advantages.extend(float(_scaled(reward - mean_reward, scale, std_reward, batch_std)) for reward in group)
    return advantages


def zero_std_groups(rewards: list[float], group_size: int) -> list[bool]:
    """Per group: are its rewards all (numerically) equal? TRL's test (isclose to 0 std)."""
    return [
        bool(np.isclose(np.std(rewards[start : start + group_size]), 0.0, atol=1e-8))
        for start in range(0, len(rewards), group_size)
    ]
