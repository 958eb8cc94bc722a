# shellcheck shell=bash
# Sourced by install.sh, demo.sh and test.sh: choose the Python environment the project lives in, so all
# three use the same one. Stock Debian 12 / Ubuntu 24.04 have no `python` (only `python3`), and their pip
# refuses to install into the system (PEP 668), so outside an environment we make and use a project venv.
#   - MAGPIE_PYTHON set to an interpreter: use it;
#   - inside a virtual environment or conda env: use it;
#   - MAGPIE_TORCH=keep (a cluster node with its own CUDA torch): use the Python on PATH as it is;
#   - otherwise: ./.venv, created with `python3 -m venv` when absent.
# Sets MAGPIE_PYTHON and puts that environment's bin/ first on PATH (python, ruff, pytest).
_magpie_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n "${MAGPIE_PYTHON:-}" && -x "${MAGPIE_PYTHON}" ]]; then
  : # an interpreter named explicitly (the SLURM scripts and the tests pass theirs on)
elif [[ -n "${VIRTUAL_ENV:-}" || -n "${CONDA_PREFIX:-}" || "${MAGPIE_TORCH:-}" == keep ]]; then
  MAGPIE_PYTHON=$(command -v python3 || command -v python || true)
  if [[ -z "$MAGPIE_PYTHON" ]]; then
    echo "no python3 on PATH" >&2
    exit 2
  fi
else
  if [[ ! -x "$_magpie_root/.venv/bin/python" ]]; then
    if ! command -v python3 >/dev/null 2>&1; then
      echo "no python3 on PATH: install Python 3.10+ (Debian/Ubuntu: apt-get install python3 python3-venv)" >&2
      exit 2
    fi
    echo "creating the project venv: $_magpie_root/.venv" >&2
    if ! python3 -m venv "$_magpie_root/.venv"; then
      echo "python3 -m venv failed: on Debian/Ubuntu run apt-get install python3-venv, or activate a venv first" >&2
      exit 2
    fi
  fi
  MAGPIE_PYTHON="$_magpie_root/.venv/bin/python"
  export VIRTUAL_ENV="$_magpie_root/.venv"
fi
PATH="$(dirname "$MAGPIE_PYTHON"):$PATH"
export PATH
export MAGPIE_PYTHON
unset _magpie_root
