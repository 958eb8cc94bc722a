"""Subclasses of NeMo's MagpieTTS (and EasyMagpieTTS) preference-optimization models."""

from nemo_ext.models.easy_online_po import EasyMagpieTTSOnlinePO
from nemo_ext.models.offline_po import MagpieTTSOfflinePO
from nemo_ext.models.offline_po_datagen import MagpieTTSOfflinePODataGen
from nemo_ext.models.online_po import MagpieTTSOnlinePO

__all__ = ["EasyMagpieTTSOnlinePO", "MagpieTTSOfflinePO", "MagpieTTSOfflinePODataGen", "MagpieTTSOnlinePO"]
