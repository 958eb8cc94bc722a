#!/usr/bin/env bash
# Refresh requirements.lock: everything `pip install -e ".[dev]"` resolves to today in a fresh venv, torch excluded
# (install.sh installs it first, for the platform). Run it after changing setup.cfg's pins, then commit the lock.
#   bash scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
pip=("$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" torch==2.13.0
"${pip[@]}" -e ".[dev]"
{
  head -n 3 requirements.lock
  "$work/venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check |
    grep -v -i -E '^(torch|magpie-po-recipes)=='
} >"$work/requirements.lock"
mv "$work/requirements.lock" requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) packages"
