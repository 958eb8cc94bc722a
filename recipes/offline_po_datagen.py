"""Offline PO data generation: synthesize and score (CER, speaker similarity) every manifest item.

    python recipes/offline_po_datagen.py [--config-name offline_po_datagen_tiny] [key=value ...] [+whisper.dtype=fp16]

Config: conf/offline_po_datagen.yaml. Logic: nemo_ext/recipes/offline_po_datagen.py (callable without Hydra)."""

# First: a stop signal (SIGTERM, SIGINT, SLURM's SIGUSR1) during the imports below is kept, not fatal.
from nemo_ext.recipes.early_signals import record_signals_from_now

record_signals_from_now()

import os  # noqa: E402

from nemo_ext.recipes.entry import hydra_entry_point  # noqa: E402
from nemo_ext.recipes.offline_po_datagen import run_offline_po_datagen  # noqa: E402

main = hydra_entry_point(
    run_offline_po_datagen,
    config_dir=os.path.join(os.path.dirname(__file__), "..", "conf"),
    config_name="offline_po_datagen",
)

if __name__ == "__main__":
    main()
