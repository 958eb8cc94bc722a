"""Online preference optimization (GRPO) of EasyMagpieTTS.

    python recipes/easy_online_po.py [--config-name easy_online_po_tiny] [key=value ...] [+whisper.dtype=bf16]

Config: conf/easy_online_po.yaml. Logic: nemo_ext/recipes/easy_online_po.py (callable without Hydra)."""

# First: a stop signal (SIGTERM, SIGINT, SLURM's SIGUSR1) during the imports below is kept, not fatal.
from nemo_ext.recipes.early_signals import record_signals_from_now

record_signals_from_now()

import os  # noqa: E402

from nemo_ext.recipes.easy_online_po import run_easy_online_po  # noqa: E402
from nemo_ext.recipes.entry import hydra_entry_point  # noqa: E402

main = hydra_entry_point(
    run_easy_online_po, config_dir=os.path.join(os.path.dirname(__file__), "..", "conf"), config_name="easy_online_po"
)

if __name__ == "__main__":
    main()
