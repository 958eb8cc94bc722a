"""Online preference optimization (GRPO) of MagpieTTS.

    python recipes/online_po.py [--config-name online_po_tiny] [key=value ...] [+whisper.dtype=fp16]

Config: conf/online_po.yaml. Stage: nemo_ext/stages/online_po.py (ONLINE_PO.run(cfg) without Hydra)."""

# First: a stop signal (SIGTERM, SIGINT, SLURM's SIGUSR1) during the imports below is kept, not fatal.
from nemo_ext.recipes.early_signals import record_signals_from_now

record_signals_from_now()

import os  # noqa: E402

from nemo_ext.recipes.entry import hydra_entry_point  # noqa: E402
from nemo_ext.stages import ONLINE_PO  # noqa: E402

main = hydra_entry_point(
    ONLINE_PO, config_name="online_po", config_dir=os.path.join(os.path.dirname(__file__), "..", "conf")
)

if __name__ == "__main__":
    main()
