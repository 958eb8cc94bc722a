"""MagpieTTS GRPO's reward for one rollout and its group's validity: NeMo 3.0.0's arithmetic
(`MagpieTTSModelOnlinePO.generate_and_reward`), operation for operation, so the same CER, speaker similarity and PESQ
give NeMo's rewards bit for bit (tests/test_parity_nemo.py compares every per-item metrics file with NeMo's class).
Nothing here imports torch."""

from __future__ import annotations

from dataclasses import dataclass

# MagpieTTSModelOnlinePO.generate_and_reward's length rule: a rollout this long or this short gets reward 0.
NEMO_TOO_LONG_FRAMES = 425
NEMO_TOO_SHORT_FRAMES = 3
PESQ_MAX = 4.5  # NeMo divides the SQUIM PESQ estimate by it


@dataclass(frozen=True)
class RewardScale:
    """Where NeMo's CER and speaker-similarity rewards are 0.5 and 1 (`model.mean_cer_dataset`, ...)."""

    mean_cer_dataset: float
    mean_ssim_dataset: float
    best_ssim_achievable: float
    cer_weight: float
    ssim_weight: float
    pesq_weight: float
    use_pesq: bool


def rollout_reward(item: dict, scale: RewardScale) -> float:
    """Writes `cer_reward`, `spk_similarity_reward`, `pesq_reward` and `reward` into `item` (NeMo's per-item
    metrics: `cer_gt`, `spk_similarity`, `pesq`, `codes_len`); returns the CER it was scored with (clamped)."""
    item_cer = min(max(item["cer_gt"], 0.0), 1.0)
    item_ssim = max(min(item["spk_similarity"], scale.best_ssim_achievable), 0.0)
    mean_cer, mean_ssim = scale.mean_cer_dataset, scale.mean_ssim_dataset
    if item_cer <= mean_cer:
        cer_reward = 0.5 + 0.5 * (mean_cer - item_cer) / mean_cer
    else:
        cer_reward = 0.5 - 0.5 * (item_cer - mean_cer) / (1 - mean_cer)
    if item_ssim >= mean_ssim:
        ssim_reward = 0.5 + 0.5 * (item_ssim - mean_ssim) / (scale.best_ssim_achievable - mean_ssim)
    else:
        ssim_reward = 0.5 - 0.5 * (mean_ssim - item_ssim) / (mean_ssim)
    pesq_reward = item["pesq"] / PESQ_MAX if scale.use_pesq else 0.0
    item["reward"] = cer_reward * scale.cer_weight + ssim_reward * scale.ssim_weight + pesq_reward * scale.pesq_weight
    if item["codes_len"] >= NEMO_TOO_LONG_FRAMES or item["codes_len"] <= NEMO_TOO_SHORT_FRAMES:
        item["reward"] = 0.0  # did not finish the sentence, or barely started one
    item["cer_reward"] = cer_reward
    item["spk_similarity_reward"] = ssim_reward
    item["pesq_reward"] = pesq_reward
    return item_cer


def group_validities(
    metrics: list[dict], group_size: int, scale: RewardScale, best_cer_threshold, worst_cer_threshold
) -> list[bool]:
    """Rewards every rollout (`rollout_reward`); per rollout, whether its group stays in the loss: NeMo leaves out a
    group whose best CER is above `best_cer_threshold` or whose worst is above `worst_cer_threshold`."""
    validities = []
    for start in range(0, len(metrics), group_size):
        best, worst = 1.0, 0.0
        for item in metrics[start : start + group_size]:
            cer = rollout_reward(item, scale)
            best, worst = min(best, cer), max(worst, cer)
        valid = not (best > best_cer_threshold or worst > worst_cer_threshold)
        validities.extend([valid] * group_size)
    return validities
