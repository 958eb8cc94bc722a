"""The policy loss of one MagpieTTS GRPO update, where this project changes NeMo's: a registered loss type's
aggregation (nemo_ext/grpo/losses.py), the clipped importance ratio against stored log-probs for several updates per
rollout batch (TRL's num_iterations / epsilon / epsilon_high), and reference log-probs computed once per rollout.

The loop over frame-stacking slots and codebooks is NeMo 3.0.0's (MagpieTTSModelOnlinePO.process_batch_online_po),
operation for operation: for a loss type NeMo has and one update per rollout it gives NeMo's loss and gradients bit
for bit (tests/test_grpo_seams.py runs NeMo's class next to it)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class SlotLogps:
    """Per-token log-probs of every (frame-stacking slot, codebook), in NeMo's loop order."""

    values: list[torch.Tensor] = field(default_factory=list)


@dataclass(frozen=True)
class RolloutScoring:
    """`model.logprob_temperature: sampling`: the teacher-forced logits transformed as the rollout's were before its
    draw (TRL divides by the sampling temperature; upstream's EasyMagpieTTS, NVIDIA-NeMo/Speech #16230, also masks the
    forbidden tokens): divided by the temperature, the special tokens other than end-of-speech and everything outside
    the top-k set to -inf. The label itself is never masked: the teacher-forced ranking is not the rollout's (train
    mode, no inference prior), and a masked label would give an infinite log-prob."""

    temperature: float
    topk: int
    codebook_size: int

    def logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        from nemo.collections.tts.modules.magpietts_modules import SpecialAudioToken

        scaled = logits / self.temperature
        label_logits = scaled.gather(-1, labels.unsqueeze(-1))
        forbidden = SpecialAudioToken.get_forbidden_tokens(self.codebook_size, forbid_audio_eos=False)
        scaled = scaled.clone()
        scaled[..., forbidden] = float("-inf")
        if self.topk < scaled.size(-1):
            kth_best = torch.topk(scaled, self.topk, dim=-1).values[..., -1:]
            scaled = scaled.masked_fill(scaled < kth_best, float("-inf"))
        return scaled.scatter(-1, labels.unsqueeze(-1), label_logits)


@dataclass(frozen=True)
class SampledLogps:
    """Each sampled code's log-prob under the distribution the rollout decoder drew it from, per (frame-stacking slot,
    codebook) in NeMo's loop order, laid out as the teacher-forced log-probs of that slot; `valid`: the frames the
    rollout sampled. Its end-of-speech frame (teacher forcing labels it with the end token in every codebook, which
    no draw gave) and the padding are not valid."""

    values: list[torch.Tensor]
    valid: list[torch.Tensor]

    @classmethod
    def by_slot(cls, sampling_logps, codes_lens, codebook_targets, frame_stacking_factor, num_codebooks):
        """`sampling_logps` (B, codebooks, frames) as the rollout decoder recorded them; `codebook_targets` the
        teacher-forced labels (the rollout's codes with the end token added, padded to whole stacked frames)."""
        values, valid = [], []
        fsf = frame_stacking_factor
        for fs_idx in range(fsf):
            for codebook_idx in range(num_codebooks):
                labels = codebook_targets[:, codebook_idx, fs_idx::fsf]
                sampled = sampling_logps[:, codebook_idx, fs_idx::fsf].to(labels.device)
                frames = min(sampled.size(1), labels.size(1))
                aligned = torch.zeros(labels.shape, dtype=sampled.dtype, device=labels.device)
                aligned[:, :frames] = sampled[:, :frames]
                index = fs_idx + fsf * torch.arange(labels.size(1), device=labels.device)
                mask = index.unsqueeze(0) < codes_lens.to(labels.device).unsqueeze(1)
                mask[:, frames:] = False
                values.append(aligned)
                valid.append(mask)
        return cls(values, valid)


@dataclass(frozen=True)
class SamplingCorrection:
    """TRL's truncated importance-sampling correction (GRPOConfig.vllm_importance_sampling_correction, per token,
    truncated: `token_truncate`): each frame's policy loss weighted by min(pi_policy / pi_sampling, cap), pi_policy
    the teacher-forced policy's probability of the code at the start of the update (detached, as TRL's old log-probs)
    and pi_sampling the one the rollout decoder drew it with. Frames the rollout did not sample weigh 1."""

    sampled: SampledLogps
    cap: float

    def weights(self, slot: int, policy_logps: torch.Tensor) -> torch.Tensor:
        ratio = torch.exp(policy_logps.detach() - self.sampled.values[slot].to(policy_logps.dtype))
        return torch.where(self.sampled.valid[slot], ratio.clamp(max=self.cap), torch.ones_like(ratio))


def per_token_logps(model, logits, labels, mask, scoring: RolloutScoring | None):
    """NeMo's `_get_per_token_logps`, on the logits as `scoring` transforms them (None: as they are)."""
    if scoring is not None:
        logits = scoring.logits(logits, labels)
    return model._get_per_token_logps(logits, labels, mask)


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    kl: torch.Tensor
    policy_logps: SlotLogps  # detached: the "old" log-probs for the next update of the same rollouts
    ratio_mean: float = 1.0  # mean importance ratio over the valid frames (exactly 1 on a rollout's first update)
    clipped_low: float = 0.0  # share of valid frames clipped below (negative advantage), TRL's clip_ratio/low_mean
    clipped_high: float = 0.0  # share clipped above (positive advantage), TRL's clip_ratio/high_mean


def magpietts_policy_loss(
    model,
    policy_outputs: dict,
    reference_logps: SlotLogps | None,
    codebook_targets: torch.Tensor,
    advantages: torch.Tensor,
    group_validities: torch.Tensor,
    logits_key: str,
    loss_type,
    context,
    old_logps: SlotLogps | None = None,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    scoring: RolloutScoring | None = None,
    sampling_correction: SamplingCorrection | None = None,
) -> PolicyLoss:
    """`reference_logps`: None when reference-free. `old_logps`: None on a rollout batch's first update (the ratio is
    NeMo's exp(logp - logp.detach()), exactly 1), else the log-probs the first update's forward gave.
    `sampling_correction`: None (NeMo's loss), else the clipped objective weighted per frame before the KL term is
    added (as TRL), by weights from the first update's log-probs, the same for every update of the rollout batch."""
    total_loss = total_kl = None
    policy_logps = SlotLogps()
    ratio_sum = low_sum = high_sum = 0.0
    frames = 0.0
    fsf, num_codebooks = model.frame_stacking_factor, model.num_audio_codebooks
    for fs_idx in range(fsf):
        for codebook_idx in range(num_codebooks):
            slot = len(policy_logps.values)
            mask = policy_outputs["loss_mask"][:, codebook_idx, fs_idx::fsf]
            si = (codebook_idx + num_codebooks * fs_idx) * model.num_all_tokens_per_codebook
            ei = si + model.num_all_tokens_per_codebook
            codebook_logits = policy_outputs[logits_key][:, :, si:ei]
            labels = codebook_targets[:, codebook_idx, fs_idx::fsf]
            logps = per_token_logps(model, codebook_logits, labels, mask, scoring)
            policy_logps.values.append(logps.detach())
            if old_logps is None:
                per_token_loss = -(torch.exp(logps - logps.detach()) * advantages.unsqueeze(1))
            else:
                ratio = torch.exp(logps - old_logps.values[slot])
                clipped = torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high)
                per_token_loss = -torch.min(ratio * advantages.unsqueeze(1), clipped * advantages.unsqueeze(1))
                with torch.no_grad():
                    valid = mask.float()
                    low = (ratio < 1 - epsilon_low) & (advantages.unsqueeze(1) < 0)
                    high = (ratio > 1 + epsilon_high) & (advantages.unsqueeze(1) > 0)
                    ratio_sum += float((ratio * valid).sum())
                    low_sum += float((low.float() * valid).sum())
                    high_sum += float((high.float() * valid).sum())
                    frames += float(valid.sum())
            if sampling_correction is not None:
                first_update_logps = logps if old_logps is None else old_logps.values[slot]
                per_token_loss = per_token_loss * sampling_correction.weights(slot, first_update_logps)
            per_token_loss = per_token_loss * group_validities.unsqueeze(1)

            if reference_logps is not None:
                ref_logps = reference_logps.values[slot]
                per_token_kl = torch.exp(ref_logps - logps) - (ref_logps - logps) - 1
                per_token_loss = per_token_loss + model.cfg.grpo_beta * per_token_kl
                codebook_kl = ((per_token_kl * mask).sum(dim=1) / mask.sum(dim=1)).mean()
            else:
                codebook_kl = torch.tensor(0.0, device=model.device)

            codebook_loss = loss_type.aggregate(per_token_loss, mask, context)
            if total_loss is None:
                total_loss, total_kl = codebook_loss, codebook_kl
            else:
                total_loss += codebook_loss
                total_kl += codebook_kl
    total_loss /= num_codebooks * fsf
    total_kl /= num_codebooks * fsf
    result = PolicyLoss(total_loss, total_kl, policy_logps)
    if old_logps is not None and frames:
        result.ratio_mean, result.clipped_low, result.clipped_high = (
            ratio_sum / frames,
            low_sum / frames,
            high_sum / frames,
        )
    return result


def reference_log_probs(
    model, reference_outputs: dict, codebook_targets: torch.Tensor, logits_key: str, scoring=None
) -> SlotLogps:
    """The reference policy's per-token log-probs of every slot (NeMo recomputes them per slot inside its loop;
    computed once here, they serve every update of the rollout batch)."""
    result = SlotLogps()
    fsf, num_codebooks = model.frame_stacking_factor, model.num_audio_codebooks
    with torch.no_grad():
        for fs_idx in range(fsf):
            for codebook_idx in range(num_codebooks):
                mask = reference_outputs["loss_mask"][:, codebook_idx, fs_idx::fsf]
                si = (codebook_idx + num_codebooks * fs_idx) * model.num_all_tokens_per_codebook
                logits = reference_outputs[logits_key][:, :, si : si + model.num_all_tokens_per_codebook]
                labels = codebook_targets[:, codebook_idx, fs_idx::fsf]
                result.values.append(per_token_logps(model, logits, labels, mask, scoring))
    return result
