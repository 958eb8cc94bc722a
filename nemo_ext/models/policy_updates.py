"""MagpieTTS GRPO's update (the step is grpo_step.py): the rollout batch made ready for the loss, one update (the
loss of nemo_ext/grpo/policy_loss.py: NeMo's types and TRL's bnpo / dapo, or one registered in
nemo_ext/grpo/losses.py), several updates per rollout batch (TRL's num_iterations with the clipped ratio), and groups
without reward spread left out (skip_zero_std_groups).

`_rollouts` is NeMo 3.0.0's process_batch_online_po up to the policy forward, the loss half is
nemo_ext/grpo/policy_loss.py; with NeMo's loss types and one update they give NeMo's losses and weights bit for bit
(tests/test_grpo_seams.py and tests/test_parity_nemo.py run NeMo's class next to them)."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from nemo_ext.grpo.across_ranks import tokens_per_rank
from nemo_ext.grpo.advantages import zero_std_groups
from nemo_ext.grpo.losses import LOSS_TYPES, LossContext
from nemo_ext.grpo.policy_loss import (
    PolicyLoss,
    RolloutScoring,
    SampledLogps,
    SamplingCorrection,
    SlotLogps,
    magpietts_policy_loss,
    reference_log_probs,
)
from nemo_ext.random_state import RandomState
from nemo_ext.telemetry import phases
from nemo_ext.telemetry.learning import sampling_mismatch


@dataclass
class RolloutBatch:
    """One batch's rollouts, rewards and advantages, ready for one or more policy updates."""

    batch: dict  # batch_repeated with the generated codes as targets
    codebook_targets: torch.Tensor
    advantages: torch.Tensor
    group_validities: torch.Tensor
    logits_key: str
    mean_reward: torch.Tensor
    std_reward: torch.Tensor
    metrics: list[dict]
    groups_kept: int
    groups: int
    reference_logps: SlotLogps | None = None  # computed by the first update, reused by the others
    # The random streams before the first update's policy forward: each later update replays them (its dropout
    # masks, context drops and decoder-input corruption are the first update's), unless replay is off.
    first_update_draws: RandomState | None = None
    # Each sampled code's log-prob under the distribution it was drawn from, laid out as the teacher-forced slots (our
    # rollout decoder records them; None for NeMo's decoders and local-transformer rollouts). Built once per rollout
    # batch: the sampling figures and the importance-sampling correction of every update read it.
    sampled: SampledLogps | None = None


def _select_items(batch: dict, keep: list[int]) -> dict:
    """The batch's items at `keep` (tensors and lists along their first dimension, as NeMo's repeat made them), each
    padded tensor trimmed to its longest kept item (`<key>_lens`): NeMo's encoders build their masks from the lengths
    and expect no wider padding (as EasyMagpieTTS's _slice_batch_range trims)."""
    index = torch.tensor(keep)
    selected = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            selected[key] = value.index_select(0, index.to(value.device))
        elif isinstance(value, list):
            selected[key] = [value[i] for i in keep]
        else:
            selected[key] = value
    for key, lens in list(selected.items()):
        padded = selected.get(key.removesuffix("_lens")) if key.endswith("_lens") else None
        if isinstance(lens, torch.Tensor) and isinstance(padded, torch.Tensor) and padded.dim() >= 2 and lens.numel():
            selected[key.removesuffix("_lens")] = padded[..., : int(lens.max())]
    return selected


class PolicyUpdates:
    """Mixed into MagpieTTSOnlinePO through GRPOStep (before NeMo's class)."""

    manual_gradient_clipping: tuple[float, str] | None = None  # the trainer's, when this class steps the optimizer

    # ---- NeMo 3.0.0's process_batch_online_po, up to the policy forward ----
    def _rollouts(self, batch, n_generations_per_item, mode="train") -> RolloutBatch:
        from nemo.collections.tts.models.magpietts_preference_optimization import add_eos_token, pad_audio_codes

        settings = self.settings
        if settings.use_kv_cache_during_online_po:
            self.use_kv_cache_for_inference = True
            self.decoder.reset_cache(use_cache=True)
        use_local_transformer_for_inference = False
        logits_key = "logits"
        if settings.use_local_transformer_prob > 0.0 and mode == "train":
            use_local_transformer_for_inference = random.random() < settings.use_local_transformer_prob
            logits_key = "local_transformer_logits"
        with torch.no_grad():
            self.eval()
            generated = self.generate_and_reward(
                batch,
                n_generations_per_item,
                mode,
                use_local_transformer_for_inference=use_local_transformer_for_inference,
            )
            self.train()
        if settings.use_kv_cache_during_online_po:
            self.use_kv_cache_for_inference = False
            self.decoder.reset_cache(use_cache=False)

        batch_repeated = generated["batch_repeated"]
        predicted_codes = generated["predicted_codes"]
        predicted_codes_lens = generated["predicted_codes_lens"]
        sampling_logps = getattr(self, "last_rollout_logprobs", None)
        advantages = generated["advantages"]
        validities = generated["group_validities"]
        groups = len(batch_repeated["raw_texts"]) // n_generations_per_item
        groups_kept = groups
        if settings.skip_zero_std_groups and mode == "train":
            rewards = [item["reward"] for item in generated["metrics"]]
            spread = [not equal for equal in zero_std_groups(rewards, n_generations_per_item)]
            groups_kept = sum(spread)
            self._record_learning({"learning/frac_groups_skipped": 1.0 - groups_kept / groups})
            # With no group left, one stays in with its loss scaled to 0 (every rank takes part in the backward).
            kept = [g for g, has in enumerate(spread) if has] or [0]
            keep = [g * n_generations_per_item + i for g in kept for i in range(n_generations_per_item)]
            if len(keep) < len(rewards):
                batch_repeated = _select_items(batch_repeated, keep)
                index = torch.tensor(keep, device=predicted_codes.device)
                predicted_codes = predicted_codes.index_select(0, index)
                predicted_codes_lens = predicted_codes_lens.index_select(0, index)
                advantages = advantages.index_select(0, index.to(advantages.device))
                if sampling_logps is not None:
                    sampling_logps = sampling_logps.index_select(0, index.to(sampling_logps.device))
                validities = validities.index_select(0, index.to(validities.device))
        predicted_codes = predicted_codes[:, :, : predicted_codes_lens.max()]
        batch_repeated["audio_codes"] = predicted_codes
        batch_repeated["audio_codes_lens"] = predicted_codes_lens
        batch_repeated.pop("audio", None)
        batch_repeated.pop("audio_lens", None)
        codebook_targets, _ = add_eos_token(
            codes=predicted_codes, codes_len=predicted_codes_lens, eos_id=self.audio_eos_id
        )
        codebook_targets = pad_audio_codes(codebook_targets, self.frame_stacking_factor).long()
        return RolloutBatch(
            batch=batch_repeated,
            codebook_targets=codebook_targets,
            advantages=advantages,
            group_validities=validities,
            logits_key=logits_key,
            mean_reward=generated["mean_reward"],
            std_reward=generated["std_reward"],
            metrics=generated["metrics"],
            groups_kept=groups_kept,
            groups=groups,
            sampled=None
            if sampling_logps is None
            else SampledLogps.by_slot(
                sampling_logps,
                predicted_codes_lens,
                codebook_targets,
                self.frame_stacking_factor,
                self.num_audio_codebooks,
            ),
        )

    def _loss_context(self) -> LossContext:
        return LossContext(
            max_decoder_steps=self.max_decoder_steps,
            tokens_per_rank=lambda mask: tokens_per_rank(mask.sum().detach().float()),
        )

    def _policy_update(self, rollouts: RolloutBatch, old_logps: SlotLogps | None = None) -> PolicyLoss:
        """One update's loss: the policy forward on the rollouts, the reference's once per rollout batch."""
        policy_outputs = self.process_batch(rollouts.batch)
        if not self.reference_free and rollouts.reference_logps is None:
            with torch.no_grad():
                reference_outputs = self._reference_model.process_batch(rollouts.batch)
            rollouts.reference_logps = reference_log_probs(
                self, reference_outputs, rollouts.codebook_targets, rollouts.logits_key, self._rollout_scoring()
            )
        elif not self.reference_free:
            self._reference_model.replay = None  # the policy forward captured draws no reference forward will use
        update = magpietts_policy_loss(
            self,
            policy_outputs,
            rollouts.reference_logps,
            rollouts.codebook_targets,
            rollouts.advantages,
            rollouts.group_validities,
            rollouts.logits_key,
            LOSS_TYPES[self.settings.loss_type],
            self._loss_context(),
            old_logps=old_logps,
            epsilon_low=self.settings.epsilon,
            epsilon_high=self.settings.epsilon_high,
            scoring=self._rollout_scoring(),
            sampling_correction=self._sampling_correction(rollouts),
        )
        if rollouts.groups_kept == 0:
            update.loss = update.loss * 0.0
        if old_logps is None and rollouts.sampled is not None:
            self._record_learning(self._sampling_mismatch(rollouts, update.policy_logps))
        return update

    def _sampling_correction(self, rollouts: RolloutBatch) -> SamplingCorrection | None:
        """`model.importance_sampling_correction` (settings refuse it where the rollouts record no log-probs)."""
        cap = self.settings.importance_sampling_cap
        if cap is None:
            return None
        if rollouts.sampled is None:
            raise RuntimeError("importance_sampling_correction: the rollout decoder recorded no sampling log-probs")
        return SamplingCorrection(rollouts.sampled, cap)

    def _rollout_scoring(self) -> RolloutScoring | None:
        """`model.logprob_temperature: sampling`: score under the rollouts' temperature and top-k (policy_loss.py)."""
        if self.settings.logprob_temperature != "sampling":
            return None
        return RolloutScoring(self.settings.inference_temperature, self.settings.inference_topk, self.codebook_size)

    def _sampling_mismatch(self, rollouts: RolloutBatch, policy_logps: SlotLogps) -> dict:
        """TRL's sampling figures: each sampled code's log-prob under the rollout's distribution against the
        teacher-forced policy's at the start of the update, over the frames the rollouts sampled."""
        sampled = rollouts.sampled
        return sampling_mismatch(
            torch.cat([values.reshape(-1) for values in sampled.values]),
            torch.cat([policy.reshape(-1) for policy in policy_logps.values]),
            torch.cat([valid.reshape(-1) for valid in sampled.valid]),
        )

    # ---- several updates per rollout batch (manual optimization) ----
    def _several_updates_step(self, batch):
        """num_iterations optimizer steps on one batch's rollouts: the first against NeMo's ratio (exactly 1), the
        others against the first update's log-probs, clipped. Lightning counts each as a step."""
        settings = self.settings
        self._learning_step = {}
        if settings.empty_cuda_cache_every_step:
            torch.cuda.empty_cache()  # as NeMo's training_step
        rollouts = self._rollouts(batch, settings.n_generations_per_item, "train")
        optimizer = self.optimizers()
        schedulers = self.lr_schedulers()
        schedulers = [] if schedulers is None else schedulers if isinstance(schedulers, list) else [schedulers]
        old_logps, losses, kls, ratios = None, [], [], []
        clipped_low = clipped_high = 0.0
        for iteration in range(settings.num_iterations):
            if iteration == 0:
                rollouts.first_update_draws = RandomState.capture()
            elif settings.replay_random_draws:
                # Fresh draws would make the ratio against the first update's log-probs differ from 1 at unchanged
                # weights (dropout 0.1: 1.02-1.03, 15-19% of frames clipped on noise alone).
                rollouts.first_update_draws.restore()
            update = self._policy_update(rollouts, old_logps)
            optimizer.zero_grad()
            self.manual_backward(update.loss)
            optimizer.step()  # clips in on_before_optimizer_step, after a gradient scaler unscaled
            self.step_anatomy.end_if_open(phases.OPTIMIZER)  # no optimizer_step hook closes it in manual mode
            for scheduler in schedulers:
                scheduler.step()
            if iteration == 0:
                old_logps = update.policy_logps
            losses.append(update.loss.detach())
            kls.append(float(update.kl.detach()))
            ratios.append(update.ratio_mean)
            clipped_low += update.clipped_low
            clipped_high += update.clipped_high
        later = max(settings.num_iterations - 1, 1)
        loss = torch.stack(losses).mean()
        self.log("train_loss", loss, prog_bar=True, sync_dist=True)
        self.log("train_kl_loss", sum(kls) / len(kls), prog_bar=True, sync_dist=True)
        self.log("train_mean_reward", rollouts.mean_reward, prog_bar=True, sync_dist=True)
        self.log("train_std_reward", rollouts.std_reward, prog_bar=True, sync_dist=True)
        self._record_learning(
            {
                "learning/kl": sum(kls) / len(kls),
                "learning/importance_ratio_first": ratios[0],
                "learning/importance_ratio_last": ratios[-1],
                "learning/clip_ratio_low": clipped_low / later,
                "learning/clip_ratio_high": clipped_high / later,
                "learning/clip_ratio": (clipped_low + clipped_high) / later,
            }
        )
        figures, self._learning_step = self._learning_step, None
        self._log_learning(figures)
        return loss

    def on_before_optimizer_step(self, optimizer):
        # Measured first (learning/grad_norm, before clipping, as in Lightning's own order for automatic optimization).
        super().on_before_optimizer_step(optimizer)
        if not self.automatic_optimization and self.manual_gradient_clipping is not None:
            # Here rather than before optimizer.step(): under 16-mixed, Lightning's precision plugin unscales the
            # gradients between the backward and this hook. Clipped before the step, the scaled gradients were
            # clipped (Lightning issue #18089), and a gradient 65536 times too large always hit the bound.
            value, algorithm = self.manual_gradient_clipping
            self.clip_gradients(optimizer, gradient_clip_val=value, gradient_clip_algorithm=algorithm)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        super().on_train_batch_end(outputs, batch, batch_idx)
        if not self.automatic_optimization:
            # Lightning labels a batch's logged row with its count of batches; here a batch is num_iterations
            # optimizer steps, so its row is labelled as the last of them (as one-update steps are: step - 1).
            self.trainer.fit_loop.epoch_loop._batches_that_stepped = self.trainer.global_step - 1
