"""Every stage, declared once (nemo_ext/stages/stage.py says what a declaration holds)."""

from nemo_ext.stages.easy_online_po import EASY_ONLINE_PO
from nemo_ext.stages.offline_po_datagen import OFFLINE_PO_DATAGEN
from nemo_ext.stages.offline_po_dpo import OFFLINE_PO_DPO
from nemo_ext.stages.offline_po_pairs import OFFLINE_PO_PAIRS
from nemo_ext.stages.online_po import ONLINE_PO
from nemo_ext.stages.stage import Loop, Stage, StageSettings

STAGES = {
    stage.name: stage for stage in (ONLINE_PO, EASY_ONLINE_PO, OFFLINE_PO_DATAGEN, OFFLINE_PO_PAIRS, OFFLINE_PO_DPO)
}

__all__ = [
    "EASY_ONLINE_PO",
    "OFFLINE_PO_DATAGEN",
    "OFFLINE_PO_DPO",
    "OFFLINE_PO_PAIRS",
    "ONLINE_PO",
    "STAGES",
    "Loop",
    "Stage",
    "StageSettings",
]
