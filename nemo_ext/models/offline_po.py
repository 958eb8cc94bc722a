"""DPO / IPO / RPO on chosen-rejected pairs: NeMo's `MagpieTTSModelOfflinePO`, with cached codes widened on load and
its implicit-reward figures logged."""

from __future__ import annotations

from nemo.collections.tts.models import magpietts_preference_optimization as upstream

from nemo_ext.datasets import MagpieTTSDatasetDPOWideCodes, adopt
from nemo_ext.models.dropout import disable_dropout
from nemo_ext.settings.fields import plain
from nemo_ext.settings.offline_po import DPOSettings
from nemo_ext.telemetry.learning import dpo_figures


class MagpieTTSOfflinePO(upstream.MagpieTTSModelOfflinePO):
    """NeMo's class unchanged but for its datasets: DataGen saves codes as int16 and NeMo's DPO loss gathers with
    them, which torch refuses for int16 (see MagpieTTSDatasetDPOWideCodes). Each training step also logs DPO's
    implicit-reward accuracy, margin and means (learning/dpo_*), which NeMo computes and discards."""

    def __init__(self, cfg, trainer=None, settings: DPOSettings | None = None):
        self.settings = settings or DPOSettings.parse(plain(cfg))
        self._implicit_rewards = None
        super().__init__(cfg, trainer)
        if self.settings.disable_dropout:
            disable_dropout(self)  # the policy and the reference inside it

    def get_dataset(self, dataset_cfg, dataset_type):
        return adopt(super().get_dataset(dataset_cfg, dataset_type), MagpieTTSDatasetDPOWideCodes)

    def preference_loss(self, *args, **kwargs):
        losses, chosen_rewards, rejected_rewards = super().preference_loss(*args, **kwargs)
        self._implicit_rewards = (chosen_rewards, rejected_rewards)
        return losses, chosen_rewards, rejected_rewards

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        for key, value in dpo_figures(*self._implicit_rewards).items():
            self.log(key, value, on_step=True, on_epoch=False, sync_dist=True)
        return loss
