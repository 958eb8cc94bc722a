"""LearningWatch: follows each GRPO step's learning figures (already averaged across ranks). After
`telemetry.no_signal_warning_steps` consecutive steps on which every group's rewards were equal it warns once
(naming the likely causes) and logs learning/no_signal_warning = 1 at that step; at the end of training it prints
how the mean reward moved."""

from __future__ import annotations

import statistics

from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from nemo_ext.telemetry.learning import PREFIX, NoLearningSignal

NO_SIGNAL_WARNING = PREFIX + "no_signal_warning"
SUMMARY_WINDOW = 10  # steps at each end of the run


class LearningWatch(Callback):
    def __init__(self, no_signal_steps: int, group_size: int):
        self.watch = NoLearningSignal(no_signal_steps, group_size)
        self.rewards: list[float] = []
        self.zero_std: list[float] = []
        self.start_step = 0

    def on_train_start(self, trainer, pl_module):
        self.start_step = trainer.global_step  # a resumed run counts its own steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        figures = pl_module.last_learning_figures
        frac = figures.get(PREFIX + "frac_reward_zero_std")
        if frac is None:
            return
        self.rewards.append(figures[PREFIX + "reward_mean"])
        self.zero_std.append(frac)
        # Every rank sees the same averaged value: every rank decides alike.
        if self.watch.update(frac):
            rank_zero_warn(self.watch.message())
            pl_module.log(NO_SIGNAL_WARNING, 1.0, on_step=True, on_epoch=False, rank_zero_only=True)

    def summary(self, optimizer_steps: int | None = None) -> str | None:
        """`optimizer_steps`: the run's, where a rollout batch serves several (model.num_iterations > 1)."""
        if not self.rewards:
            return None
        batches = len(self.rewards)
        window = min(SUMMARY_WINDOW, max(batches // 2, 1))
        first, last = statistics.mean(self.rewards[:window]), statistics.mean(self.rewards[-window:])
        unit = "steps" if optimizer_steps in (None, batches) else "rollout batches"
        span = (
            f"{batches} steps of this run" if unit == "steps" else f"{batches} rollout batches, {optimizer_steps} steps"
        )
        return (
            f"Learning: mean reward {first:.3f} over the first {window} {unit} -> {last:.3f} over the last {window} "
            f"({span}); groups without reward spread: {statistics.mean(self.zero_std):.0%}"
        )

    def on_fit_end(self, trainer, pl_module):
        line = self.summary(trainer.global_step - self.start_step)
        if line:
            rank_zero_info(line)
