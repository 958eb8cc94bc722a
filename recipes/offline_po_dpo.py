"""Offline PO training: DPO / IPO / RPO on chosen-rejected pairs.

    python recipes/offline_po_dpo.py [--config-name offline_po_dpo_tiny] [key=value ...] [+whisper.dtype=fp16]

Config: conf/offline_po_dpo.yaml. Stage: nemo_ext/stages/offline_po_dpo.py (OFFLINE_PO_DPO.run(cfg) without Hydra)."""

# First: a stop signal (SIGTERM, SIGINT, SLURM's SIGUSR1) during the imports below is kept, not fatal.
from nemo_ext.recipes.early_signals import record_signals_from_now

record_signals_from_now()

import os  # noqa: E402

from nemo_ext.recipes.entry import hydra_entry_point  # noqa: E402
from nemo_ext.stages import OFFLINE_PO_DPO  # noqa: E402

main = hydra_entry_point(
    OFFLINE_PO_DPO, config_name="offline_po_dpo", config_dir=os.path.join(os.path.dirname(__file__), "..", "conf")
)

if __name__ == "__main__":
    main()
