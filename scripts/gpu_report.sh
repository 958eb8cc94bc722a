#!/usr/bin/env bash
# One markdown report for a GPU node: Whisper per dtype and a short tiny GRPO with its step anatomy; with
# --published also the published-size GRPO step, NeMo's defaults against ours.
#   bash scripts/gpu_report.sh [--accelerator gpu|cpu] [--steps 4] [--out benchmarks/gpu_report.md] [--published]
# Uses the project environment (scripts/python_env.sh); see scripts/gpu_report.py for every option.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh
exec python scripts/gpu_report.py "$@"
