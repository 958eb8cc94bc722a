#!/usr/bin/env bash
# The install from a fresh clone, pip against uv, in one run, each with empty caches (every download and build
# counted), both from requirements.lock; then whether they installed the same set. Writes benchmarks/install.md.
#   bash scripts/benchmark_install.sh
# torch is installed by pip in both (the CPU wheel lies on this machine's disk, where uv does not look); the
# timing is of everything else, the part the two tools do differently.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git clone -q "$repo" "$work/clone"
python3 -m venv "$work/uv-tool"
"$work/uv-tool/bin/pip" install --quiet --disable-pip-version-check uv==0.13.10
uv=$work/uv-tool/bin/uv

install() { # $1: pip | uv
  local venv=$work/$1-venv started
  python3 -m venv "$venv"
  PIP_CACHE_DIR=$work/$1-pip-cache "$venv/bin/pip" install --quiet --disable-pip-version-check \
    --constraint "$work/clone/requirements.lock" torch==2.13.0
  started=$(date +%s.%N)
  if [[ $1 == pip ]]; then
    (cd "$work/clone" && PIP_CACHE_DIR=$work/pip-pip-cache "$venv/bin/pip" install --quiet \
      --disable-pip-version-check --constraint requirements.lock -e ".[dev]")
  else
    (cd "$work/clone" && UV_CACHE_DIR=$work/uv-cache "$uv" pip install --quiet --system-certs --python "$venv/bin/python" \
      --constraint requirements.lock -e ".[dev]")
  fi
  echo "$(date +%s.%N) - $started" | bc
  "$venv/bin/python" -m pip freeze --exclude-editable --disable-pip-version-check | sort >"$work/$1.freeze"
}

pip_s=$(install pip)
uv_s=$(install uv)
same=$(cmp -s "$work/pip.freeze" "$work/uv.freeze" && echo yes || echo no)
{
  echo "# Installing from a fresh clone: pip against uv"
  echo
  echo "\`bash scripts/benchmark_install.sh\` on $(date -u +%Y-%m-%d), $(nproc) cores, empty caches, from"
  echo "\`requirements.lock\` (torch 2.13.0 installed first by pip in both, not timed)."
  echo
  echo "| tool | seconds | packages |"
  echo "|---|---:|---:|"
  printf '| pip %s | %.0f | %s |\n' "$("$work/pip-venv/bin/pip" --version | cut -d' ' -f2)" "$pip_s" "$(wc -l <"$work/pip.freeze")"
  printf '| uv %s | %.0f | %s |\n' "$("$uv" --version | cut -d' ' -f2)" "$uv_s" "$(wc -l <"$work/uv.freeze")"
  echo
  echo "Same set of packages and versions: $same."
  if [[ $same == no ]]; then
    echo
    echo '```'
    diff "$work/pip.freeze" "$work/uv.freeze" || true
    echo '```'
  fi
} >"$repo/benchmarks/install.md"
cat "$repo/benchmarks/install.md"
