#!/usr/bin/env bash
# The test suite in a network namespace with no network at all (proves no test reaches out), as root:
#   bash scripts/test_no_network.sh [pytest args]
# Inside: loopback up (DDP over gloo and the local SLURM talk over it), plus a second loopback address,
# 127.0.0.2. Without a non-127.0.0.1 address, getaddrinfo(AI_ADDRCONFIG) returns nothing and slurmctld
# cannot bind. Nothing leaves the namespace.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh
exec unshare -n bash -c 'ip link set lo up && ip addr add 127.0.0.2/8 dev lo && exec python -m pytest -p no:cacheprovider "$@"' _ "$@"
