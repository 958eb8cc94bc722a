#!/usr/bin/env bash
# Install the project and its pinned dependencies into the current Python environment.
#   bash scripts/install.sh            # torch CPU wheel 2.13.0 first, then the package (+ dev tools)
#   MAGPIE_TORCH=keep bash scripts/install.sh   # a GPU node: keep the CUDA torch already installed
# torch goes first and pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${MAGPIE_TORCH:-torch==2.13.0}" != keep ]]; then
  python -m pip install --quiet --disable-pip-version-check "${MAGPIE_TORCH:-torch==2.13.0}"
fi
python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
python -c "import nemo_ext, torch, nemo, transformers; print('installed: torch', torch.__version__, '| nemo', nemo.__version__, '| transformers', transformers.__version__)"
