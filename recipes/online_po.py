"""Online preference optimization (GRPO) of MagpieTTS.

    python recipes/online_po.py [--config-name online_po_tiny] [key=value ...] [+whisper.dtype=fp16]

Config: conf/online_po.yaml. Logic: nemo_ext/recipes/online_po.py (callable without Hydra)."""

import os

from nemo_ext.recipes.entry import hydra_entry_point
from nemo_ext.recipes.online_po import run_online_po

main = hydra_entry_point(
    run_online_po, config_dir=os.path.join(os.path.dirname(__file__), "..", "conf"), config_name="online_po"
)

if __name__ == "__main__":
    main()
