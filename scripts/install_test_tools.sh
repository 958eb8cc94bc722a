#!/usr/bin/env bash
# System tools the test suite uses: a real single-node SLURM (slurm-wlm, munge) for the launcher tests,
# the shellcheck linter for the sbatch scripts, espeak-ng to synthesize real speech for the Whisper benchmark.
# Needs root and Debian/Ubuntu apt; elsewhere it says what it skipped and the gated tests skip.
set -euo pipefail
packages=(slurm-wlm munge shellcheck espeak-ng)
# Debian installs the daemons in /usr/sbin, which a stock PATH (env -i PATH=/usr/bin:/bin) lacks.
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
missing=()
for tool in slurmctld slurmd munged shellcheck espeak-ng; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "test tools present"
  exit 0
fi
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
  echo "skipping system test tools (${missing[*]} missing; needs root + apt-get): their tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "installed: ${packages[*]}"
