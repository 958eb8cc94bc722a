"""Mixed into the GRPO classes (both families): the learning-health figures of each training step (TRL's and
verl's names in docs/telemetry.md), collected while NeMo's step runs and logged once per step, averaged across ranks
in one collective. The figures are computed from what NeMo's step already produced (rollout metrics, KL, logits,
gradients); nothing here draws random numbers or changes a value NeMo computes."""

from __future__ import annotations

import torch

from nemo_ext.telemetry.learning import gradient_norm, grpo_rollout_figures

GRAD_NORM = "learning/grad_norm"


def _extremes_across_ranks(keys: list[str], figures: dict, means: torch.Tensor) -> torch.Tensor:
    """A figure named `.../max` (`.../min`) is the largest (smallest) over every rank, not the ranks' mean."""
    import torch.distributed as dist

    extremes = [i for i, key in enumerate(keys) if key.endswith(("/max", "/min"))]
    if not extremes or not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return means
    own = torch.tensor(
        [float(figures[keys[i]]) * (-1.0 if keys[i].endswith("/min") else 1.0) for i in extremes],
        dtype=torch.float64,
        device=means.device,
    )
    dist.all_reduce(own, op=dist.ReduceOp.MAX)  # the min as the max of the negated values: one collective
    result = means.clone()
    for slot, i in enumerate(extremes):
        result[i] = own[slot] * (-1.0 if keys[i].endswith("/min") else 1.0)
    return result


class GRPOLearningHealth:
    _learning_step: dict | None = None  # the figures of the training step in progress
    last_learning_figures: dict[str, float] = {}  # the last step's, averaged across ranks (LearningWatch)

    def rollout_clipped_at(self) -> int:
        """The rollout length at which decoding was cut off."""
        return self.max_decoder_steps

    def _record_learning(self, figures: dict) -> None:
        if self._learning_step is not None:
            self._learning_step.update(figures)

    def _record_rollouts(self, output: dict, group_size: int, mode: str) -> None:
        if self._learning_step is None or mode != "train":
            return
        self._record_learning(
            grpo_rollout_figures(
                output["metrics"],
                group_size,
                [bool(v) for v in output["group_validities"].tolist()],
                self.settings.active_reward_terms(),
                clipped_at=self.rollout_clipped_at(),
            )
        )

    def training_step(self, batch, batch_idx):
        return self._collecting_learning(lambda: super(GRPOLearningHealth, self).training_step(batch, batch_idx))

    def _collecting_learning(self, step):
        """Runs `step()` with the step's learning figures collected, then logs them once (averaged across ranks)."""
        self._learning_step = {}
        try:
            result = step()
        finally:
            figures, self._learning_step = self._learning_step, None
        self._log_learning(figures)
        return result

    def _log_learning(self, figures: dict) -> None:
        if not figures:
            return
        keys = sorted(figures)
        values = torch.tensor([float(figures[k]) for k in keys], dtype=torch.float64, device=self.device)
        if self._trainer is not None:  # every rank holds as many groups: the mean of the ranks' figures
            values = self.trainer.strategy.reduce(values, reduce_op="mean")
            values = _extremes_across_ranks(keys, figures, values)
        self.last_learning_figures = dict(zip(keys, values.tolist()))
        for key, value in self.last_learning_figures.items():
            self.log(key, value, on_step=True, on_epoch=False, sync_dist=False, rank_zero_only=True)

    def on_before_optimizer_step(self, optimizer):
        super().on_before_optimizer_step(optimizer)
        norm = gradient_norm(p for group in optimizer.param_groups for p in group["params"])
        if norm is not None:
            self.log(GRAD_NORM, norm, on_step=True, on_epoch=False, sync_dist=True)
