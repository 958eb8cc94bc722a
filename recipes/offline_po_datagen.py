"""Offline PO data generation: synthesize and score (CER, speaker similarity) every manifest item.

    python recipes/offline_po_datagen.py [--config-name offline_po_datagen_tiny] [key=value ...] [+whisper.dtype=fp16]

Config: conf/offline_po_datagen.yaml. Logic: nemo_ext/recipes/offline_po_datagen.py (callable without Hydra)."""

import os

from nemo_ext.recipes.entry import hydra_entry_point
from nemo_ext.recipes.offline_po_datagen import run_offline_po_datagen

main = hydra_entry_point(
    run_offline_po_datagen,
    config_dir=os.path.join(os.path.dirname(__file__), "..", "conf"),
    config_name="offline_po_datagen",
)

if __name__ == "__main__":
    main()
