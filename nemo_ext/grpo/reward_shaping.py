"""Rewards and advantages this project changes after NeMo's reward step: a registered reward term NeMo does not
compute (added with its weight), and TRL's batch scaling (`model.scale_rewards: batch`). NeMo's group-normalized
advantages are then recomputed with NeMo's own arithmetic (advantages.py), so NeMo's loss loop, or this project's,
reads them as it reads NeMo's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nemo_ext.grpo.across_ranks import rewards_of_all_ranks
from nemo_ext.grpo.advantages import magpietts_advantages
from nemo_ext.grpo.magpietts_rewards import NEMO_TOO_LONG_FRAMES, NEMO_TOO_SHORT_FRAMES


@dataclass
class RolloutScoring:
    """What a reward term's `score(model, rollouts)` reads: one entry per rollout, in NeMo's order."""

    metrics: list[dict]  # NeMo's per-rollout metrics (cer_gt, spk_similarity, codes_len, ...)
    batch_repeated: dict  # the batch, each item repeated n_generations_per_item times
    audio_paths: list[str]  # each rollout's clip (in memory or on disk, by NeMo's path)
    read_audio: Callable[[str], tuple[np.ndarray, int]]  # path -> (samples, sample rate)


def apply_to_magpietts_rewards(output: dict, group_size: int, scores: dict, terms: dict, scaling: str) -> None:
    """Add each term's `scores` (name -> per-rollout reward in [0, 1]) with its weight (`terms`: name -> (metric,
    weight)), except where NeMo's length rule zeroed the reward, then recompute the advantages with `scaling` and
    NeMo's step figures (mean of the groups' means and stds). Changes `output` in place."""
    metrics = output["metrics"]
    for name, values in scores.items():
        metric, weight = terms[name]
        for item, value in zip(metrics, values):
            item[metric] = float(value)
            frames = item["codes_len"]
            if NEMO_TOO_SHORT_FRAMES < frames < NEMO_TOO_LONG_FRAMES:
                item["reward"] += weight * float(value)
    rewards = [item["reward"] for item in metrics]
    batch_rewards = rewards_of_all_ranks(rewards) if scaling == "batch" else None  # TRL's std spans every rank
    advantages = magpietts_advantages(rewards, group_size, scaling, batch_rewards)
    for item, advantage in zip(metrics, advantages):
        item["advantage"] = advantage
    device = output["advantages"].device
    output["advantages"] = torch.tensor(advantages, device=device)
    groups = [rewards[start : start + group_size] for start in range(0, len(rewards), group_size)]
    mean_reward = std_reward = 0.0
    for group in groups:
        group_mean = 0
        for reward in group:
            group_mean += reward
        mean_reward += group_mean / group_size
        std_reward += np.std(group)
    output["mean_reward"] = torch.tensor(mean_reward / len(groups), device=device)
    output["std_reward"] = torch.tensor(std_reward / len(groups), device=device)
