"""Offline PO, step 2 of 3: chosen / rejected pairs from a DataGen run (no model)."""

from nemo_ext.settings.pairs import PairStageSettings
from nemo_ext.stages.stage import Loop, Stage

OFFLINE_PO_PAIRS = Stage(
    name="offline_po_pairs",
    summary="offline PO, step 2: preference pairs from a DataGen run",
    loop=Loop.NONE,
    parse_algorithm=lambda root: PairStageSettings.parse(root),
    runner="nemo_ext.recipes.offline_po_pairs:make_pairs",
    telemetry=False,
    top_level_keys=("name", "datagen_run", "output_dir", "use_codes", "pairs", "wandb", "tiny_root"),
)
