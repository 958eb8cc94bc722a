"""DPO / IPO / RPO on chosen-rejected pairs: NeMo's `MagpieTTSModelOfflinePO`, with cached codes widened on load."""

from __future__ import annotations

from nemo.collections.tts.models import magpietts_preference_optimization as upstream

from nemo_ext.datasets import MagpieTTSDatasetDPOWideCodes, adopt
from nemo_ext.settings.fields import plain
from nemo_ext.settings.offline_po import DPOSettings


class MagpieTTSOfflinePO(upstream.MagpieTTSModelOfflinePO):
    """NeMo's class unchanged but for its datasets: DataGen saves codes as int16 and NeMo's DPO loss gathers with
    them, which torch refuses for int16 (see MagpieTTSDatasetDPOWideCodes)."""

    def __init__(self, cfg, trainer=None, settings: DPOSettings | None = None):
        self.settings = settings or DPOSettings.parse(plain(cfg))
        super().__init__(cfg, trainer)

    def get_dataset(self, dataset_cfg, dataset_type):
        return adopt(super().get_dataset(dataset_cfg, dataset_type), MagpieTTSDatasetDPOWideCodes)
