"""DPO / IPO / RPO on chosen-rejected pairs: NeMo's `MagpieTTSModelOfflinePO`, with cached codes widened on load, its
implicit-reward figures logged, and its reference frozen the GRPO way."""

from __future__ import annotations

from collections import deque

from nemo.collections.tts.models import MagpieTTSModel
from nemo.collections.tts.models import magpietts_preference_optimization as upstream

from nemo_ext.datasets import MagpieTTSDatasetDPOWideCodes, adopt
from nemo_ext.models.dropout import disable_dropout
from nemo_ext.models.reward_models_mixin import frozen_reference_policy
from nemo_ext.random_state import RandomState
from nemo_ext.settings.fields import plain
from nemo_ext.settings.offline_po import DPOSettings
from nemo_ext.telemetry.learning import dpo_figures

REFERENCE = "_reference_model"


class DPOReferencePolicy(MagpieTTSModel):
    """DPO's frozen reference. Each forward with a draw queued in `replays` (first in, first out: the policy runs
    chosen then rejected, and so does the reference) draws the random numbers the matching policy forward drew; the
    random streams then continue as if it had drawn none."""

    def process_batch(self, batch):
        replays = getattr(self, "replays", None)
        if not replays:
            return super().process_batch(batch)
        after_policy = RandomState.capture()
        replays.popleft().restore()
        try:
            return super().process_batch(batch)
        finally:
            after_policy.restore()


class MagpieTTSOfflinePO(upstream.MagpieTTSModelOfflinePO):
    """NeMo's class but for:
    - its datasets: DataGen saves codes as int16 and NeMo's DPO loss gathers with them, which torch refuses for int16
      (see MagpieTTSDatasetDPOWideCodes);
    - its reference (`model.reference_policy_mode`): NeMo freezes it once and it stays in eval mode (Lightning 2.x
      keeps each submodule's mode), while the policy draws dropout masks and context drops: at equal weights the
      implicit rewards are not 0. Its frozen parameters stay in NeMo's optimizer param group. Here it is left out of
      the optimizer and DDP, and runs `matched` (the policy's mode, replaying the policy's draws), `train` (the
      policy's mode, draws of its own) or `eval` (NeMo's);
    - each training step also logs DPO's implicit-reward accuracy, margin and means (learning/dpo_*), which NeMo
      computes and discards."""

    def __init__(self, cfg, trainer=None, settings: DPOSettings | None = None):
        self.settings = settings or DPOSettings.parse(plain(cfg))
        self._implicit_rewards = None
        # NeMo 3.0.0's __init__ body (MagpieTTSModel's, then the reference), the reference built as GRPO's is.
        MagpieTTSModel.__init__(self, cfg, trainer)
        self._reference_model = frozen_reference_policy(DPOReferencePolicy, cfg)
        self._reference_model.replays = deque()
        if self.settings.disable_dropout:
            disable_dropout(self)  # the policy and the reference inside it

    def get_dataset(self, dataset_cfg, dataset_type):
        return adopt(super().get_dataset(dataset_cfg, dataset_type), MagpieTTSDatasetDPOWideCodes)

    def _get_state_dict_keys_to_exclude(self):
        # MagpieTTSModel uses this list for checkpoints and for the optimizer's param groups.
        return [*super()._get_state_dict_keys_to_exclude(), REFERENCE]

    def setup(self, stage: str | None = None):
        super().setup(stage)
        # Before Lightning wraps the model in DDP: the reference's parameters and buffers are neither broadcast nor
        # all-reduced (every rank loads the same file).
        reference = self._reference_model
        names = [f"{REFERENCE}.{name}" for name, _ in reference.named_parameters()]
        names += [f"{REFERENCE}.{name}" for name, _ in reference.named_buffers()]
        self._ddp_params_and_buffers_to_ignore = names

    def process_batch(self, batch):
        if self.settings.reference_policy_mode == "matched" and self._reference_model.training:
            self._reference_model.replays.append(RandomState.capture())
        return super().process_batch(batch)

    def process_batch_dpo(self, batch_chosen_rejected):
        # NeMo freezes the reference once (eval mode), and Lightning 2.x keeps each submodule's own mode, so NeMo's
        # reference never draws dropout while the policy does. `matched` and `train` run it in the policy's mode.
        self._reference_model.train(self.training and self.settings.reference_policy_mode != "eval")
        self._reference_model.replays.clear()
        try:
            return super().process_batch_dpo(batch_chosen_rejected)
        finally:
            self._reference_model.replays.clear()

    def preference_loss(self, *args, **kwargs):
        losses, chosen_rewards, rejected_rewards = super().preference_loss(*args, **kwargs)
        self._implicit_rewards = (chosen_rewards, rejected_rewards)
        return losses, chosen_rewards, rejected_rewards

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        for key, value in dpo_figures(*self._implicit_rewards).items():
            self.log(key, value, on_step=True, on_epoch=False, sync_dist=True)
        return loss
