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
lock=()
if [[ "${MAGPIE_LOCK:-on}" != off ]]; then
  lock=(--constraint requirements.lock)
fi
if [[ "${MAGPIE_TORCH:-torch==2.13.0}" != keep ]]; then
  "${pip[@]}" "${lock[@]}" "${MAGPIE_TORCH:-torch==2.13.0}"
fi
# The project and its ~170 dependencies: with uv into a virtual environment (from a fresh clone 71 s against pip's
# 221 s, the same packages: benchmarks/install.md); with pip outside one, or with MAGPIE_INSTALLER=pip.
if [[ "${MAGPIE_INSTALLER:-uv}" == uv ]] && "$MAGPIE_PYTHON" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)'; then
  "${pip[@]}" uv==0.13.10
  # --system-certs: the machine's certificate store, as pip uses (uv's bundled roots refuse a proxy's own CA).
  "$MAGPIE_PYTHON" -m uv pip install --quiet --system-certs --python "$MAGPIE_PYTHON" "${lock[@]}" -e ".[dev]"
else
  "${pip[@]}" "${lock[@]}" -e ".[dev]"
fi
"$MAGPIE_PYTHON" -c "import nemo_ext, torch, nemo, transformers, sys; print('installed in', sys.prefix, '| torch', torch.__version__, '| nemo', nemo.__version__, '| transformers', transformers.__version__)"
