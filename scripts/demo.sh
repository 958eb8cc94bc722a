#!/usr/bin/env bash
# The embedded tiny default end to end on CPU: install, build tiny models offline, run the tiny GRPO (40 steps,
# trainer.max_steps in conf/online_po_tiny.yaml) and print whether the mean reward rose.
#   bash scripts/demo.sh [extra Hydra overrides, e.g. +whisper.dtype=fp32]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh  # the environment install.sh chose (./.venv outside one)
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export MAGPIE_TINY_ROOT="${MAGPIE_TINY_ROOT:-$PWD/.tiny}"
python scripts/make_tiny_fixtures.py --out "$MAGPIE_TINY_ROOT" >/dev/null
python recipes/online_po.py --config-name online_po_tiny "$@"
echo "demo finished: logs, audio, checkpoints and the offline W&B run are under runs/tiny/"
