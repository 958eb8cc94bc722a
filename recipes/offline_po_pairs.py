"""Offline PO, step 2 of 3: preference pairs from a DataGen run.

    python recipes/offline_po_pairs.py datagen_run=<DataGen run folder> [pairs.cer_threshold=0.01 ...]

Config: conf/offline_po_pairs.yaml. Stage: nemo_ext/stages/offline_po_pairs.py
(OFFLINE_PO_PAIRS.run(cfg) without Hydra)."""

# First: a stop signal (SIGTERM, SIGINT, SLURM's SIGUSR1) during the imports below is kept, not fatal.
from nemo_ext.recipes.early_signals import record_signals_from_now

record_signals_from_now()

import os  # noqa: E402

from nemo_ext.recipes.entry import hydra_entry_point  # noqa: E402
from nemo_ext.stages import OFFLINE_PO_PAIRS  # noqa: E402

main = hydra_entry_point(
    OFFLINE_PO_PAIRS, config_name="offline_po_pairs", config_dir=os.path.join(os.path.dirname(__file__), "..", "conf")
)

if __name__ == "__main__":
    main()
