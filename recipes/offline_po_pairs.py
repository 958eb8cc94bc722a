"""Offline PO, step 2 of 3: preference pairs from a DataGen run.

    python recipes/offline_po_pairs.py datagen_run=<DataGen run folder> [pairs.cer_threshold=0.01 ...]

Config: conf/offline_po_pairs.yaml. Logic: nemo_ext/recipes/offline_po_pairs.py (callable without Hydra)."""

import os

from nemo_ext.recipes.entry import hydra_entry_point
from nemo_ext.recipes.offline_po_pairs import run_offline_po_pairs

main = hydra_entry_point(
    run_offline_po_pairs,
    config_dir=os.path.join(os.path.dirname(__file__), "..", "conf"),
    config_name="offline_po_pairs",
)

if __name__ == "__main__":
    main()
