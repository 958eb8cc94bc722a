"""Offline PO training: DPO / IPO / RPO on chosen-rejected pairs.

    python recipes/offline_po_dpo.py [--config-name offline_po_dpo_tiny] [key=value ...] [+whisper.dtype=fp16]

Config: conf/offline_po_dpo.yaml. Logic: nemo_ext/recipes/offline_po_dpo.py (callable without Hydra)."""

import os

from nemo_ext.recipes.entry import hydra_entry_point
from nemo_ext.recipes.offline_po_dpo import run_offline_po_dpo

main = hydra_entry_point(
    run_offline_po_dpo, config_dir=os.path.join(os.path.dirname(__file__), "..", "conf"), config_name="offline_po_dpo"
)

if __name__ == "__main__":
    main()
