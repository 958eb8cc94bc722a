#!/usr/bin/env bash
# Everything the test suite needs, then the suite: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh  # the environment install.sh chose (./.venv outside one)
bash scripts/install_test_tools.sh
bash scripts/fetch_pretrained_whisper.sh
ruff check .
ruff format --check .
exec python -m pytest "$@"
