"""Learning health: what a GRPO step's rollouts, rewards and update say about whether anything is being learned, and
DPO's implicit-reward figures. Logged every step under `learning/*` (averaged across ranks; every rank holds as
many groups), and the "no learning signal" warning. docs/telemetry.md maps each name to TRL's and verl's."""

from __future__ import annotations

import math
from collections.abc import Sequence

PREFIX = "learning/"


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _std(values: Sequence[float]) -> float:
    if not values:
        return math.nan
    mean = _mean(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def grpo_rollout_figures(
    metrics: Sequence[dict],
    group_size: int,
    group_valid: Sequence[bool],
    terms: Sequence,
    clipped_at: int,
) -> dict[str, float]:
    """Figures of one step's rollouts, from NeMo's per-item metrics (`reward`, each term's reward, `cer_gt`,
    `spk_similarity`, `codes_len`). `group_valid`: per item (as NeMo's group_validities); `terms`: the active
    reward terms (nemo_ext.grpo.reward_terms); `clipped_at`: the rollout length at which decoding was cut off."""
    rewards = [float(m["reward"]) for m in metrics]
    groups = [rewards[start : start + group_size] for start in range(0, len(rewards), group_size)]
    group_stds = [_std(group) for group in groups]
    lengths = [int(m["codes_len"]) for m in metrics]
    figures = {
        "reward_mean": _mean(rewards),
        "reward_std": _mean(group_stds),  # within groups, as NeMo's train_std_reward and TRL's reward_std
        # TRL's test: a group whose rewards are (numerically) all equal gives every item an advantage of 0.
        "frac_reward_zero_std": _mean([float(math.isclose(std, 0.0, abs_tol=1e-8)) for std in group_stds]),
        "frac_groups_invalid": _mean([float(not group_valid[start]) for start in range(0, len(rewards), group_size)]),
        "cer_mean": _mean([float(m["cer_gt"]) for m in metrics]),
        "similarity_mean": _mean([float(m["spk_similarity"]) for m in metrics]),
        "rollout_frames_mean": _mean(lengths),
        "rollout_clipped_ratio": _mean([float(length >= clipped_at) for length in lengths]),
    }
    for term in terms:
        values = [float(m[term.metric]) for m in metrics if term.metric in m]
        figures[f"reward_{term.name}_mean"] = _mean(values)
        figures[f"reward_{term.name}_std"] = _std(values)
    return {PREFIX + key: value for key, value in figures.items()}


def policy_entropy(logits, loss_mask, num_codebooks: int, tokens_per_codebook: int, frame_stacking_factor: int):
    """Mean per-frame entropy of the policy's codebook distributions, reduced as NeMo reduces its KL: per codebook
    and frame-stacking slot, each rollout's mean over its frames, then the mean over rollouts and slots."""
    import torch

    with torch.no_grad():
        total = logits.new_zeros(())
        for fs_idx in range(frame_stacking_factor):
            for codebook_idx in range(num_codebooks):
                mask = loss_mask[:, codebook_idx, fs_idx::frame_stacking_factor].float()
                start = (codebook_idx + num_codebooks * fs_idx) * tokens_per_codebook
                log_probs = logits[:, :, start : start + tokens_per_codebook].float().log_softmax(-1)
                entropy = -(log_probs.exp() * log_probs).sum(-1)[:, : mask.shape[1]]
                total = total + ((entropy * mask).sum(1) / mask.sum(1).clamp(min=1.0)).mean()
        return total / (num_codebooks * frame_stacking_factor)


def gradient_norm(parameters):
    """The global L2 norm of the gradients (before any clipping), as TRL's and verl's grad_norm."""
    import torch

    norms = [p.grad.detach().float().norm(2) for p in parameters if p.grad is not None]
    return torch.stack(norms).norm(2) if norms else None


def dpo_figures(chosen_rewards, rejected_rewards) -> dict[str, object]:
    """DPO's implicit rewards (beta x log-ratio against the reference): accuracy, margin and both means."""
    return {
        PREFIX + "dpo_reward_accuracy": (chosen_rewards > rejected_rewards).float().mean(),
        PREFIX + "dpo_reward_margin": (chosen_rewards - rejected_rewards).mean(),
        PREFIX + "dpo_reward_chosen": chosen_rewards.mean(),
        PREFIX + "dpo_reward_rejected": rejected_rewards.mean(),
    }


class NoLearningSignal:
    """Counts consecutive steps on which every group's rewards were equal; after `steps` of them, says so once."""

    def __init__(self, steps: int, group_size: int):
        self.steps, self.group_size = steps, group_size
        self.consecutive = 0
        self.warned = False

    def message(self) -> str:
        return (
            f"no learning signal: every group's rewards are equal (learning/frac_reward_zero_std = 1) on the last "
            f"{self.consecutive} steps, so every advantage is 0 and only the KL term moves the weights. Likely "
            "causes: reward thresholds outside your models' range (model.mean_cer_dataset, model.mean_ssim_dataset, "
            "model.best_ssim_achievable: every reward clipped alike), a reward model that returns constants (see "
            f"learning/reward_<term>_std), or model.n_generations_per_item too small (it is {self.group_size})"
        )

    def update(self, frac_reward_zero_std: float) -> bool:
        """True on the step the warning is due (once per run)."""
        self.consecutive = self.consecutive + 1 if frac_reward_zero_std >= 1.0 else 0
        if self.consecutive >= self.steps and not self.warned:
            self.warned = True
            return True
        return False


def sampling_mismatch(sampling_logps, policy_logps, mask) -> dict:
    """TRL's figures of how far the distribution the rollouts were drawn from is from the one the update scores
    them under (trl/trainer/grpo_trainer.py, with vLLM as the sampler): over the sampled codes in `mask`, the
    absolute difference of their log-probs and the importance ratio pi_policy / pi_sampling. Tensors of one shape."""
    import torch

    valid = mask.bool()
    if not valid.any():
        return {}
    sampling, policy = sampling_logps[valid].double(), policy_logps[valid].double()
    difference = (policy - sampling).abs()
    ratio = torch.exp(policy - sampling)
    return {
        "sampling/sampling_logp_difference/mean": float(difference.mean()),
        "sampling/sampling_logp_difference/max": float(difference.max()),
        "sampling/importance_sampling_ratio/min": float(ratio.min()),
        "sampling/importance_sampling_ratio/mean": float(ratio.mean()),
        "sampling/importance_sampling_ratio/max": float(ratio.max()),
    }
