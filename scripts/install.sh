#!/usr/bin/env bash
# Install the project and its pinned dependencies.
#   bash scripts/install.sh                     # ./.venv (made with python3 -m venv), or the active venv
#   MAGPIE_TORCH=keep bash scripts/install.sh   # a GPU node: the Python on PATH, keeping its CUDA torch
# torch goes first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh

# Every package at the version of requirements.lock (the whole resolved environment but torch): a new release of
# any dependency cannot change a fresh clone. MAGPIE_LOCK=off resolves afresh (a node whose own torch needs other
# versions of torch's dependencies).
pip=("$MAGPIE_PYTHON" -m pip install --quiet --disable-pip-version-check)
if [[ "${MAGPIE_LOCK:-on}" != off ]]; then
  pip+=(--constraint requirements.lock)
fi
if [[ "${MAGPIE_TORCH:-torch==2.13.0}" != keep ]]; then
  "${pip[@]}" "${MAGPIE_TORCH:-torch==2.13.0}"
fi
"${pip[@]}" -e ".[dev]"
"$MAGPIE_PYTHON" -c "import nemo_ext, torch, nemo, transformers, sys; print('installed in', sys.prefix, '| torch', torch.__version__, '| nemo', nemo.__version__, '| transformers', transformers.__version__)"
