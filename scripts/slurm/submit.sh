#!/usr/bin/env bash
# Validate on the login node, then queue: bad paths or config values fail here in seconds, not after queueing.
#   [NODES=2] [GPUS_PER_NODE=8] [CPUS_PER_TASK=8] [TIME=04:00:00] [ACCOUNT=..] [PARTITION=..] [SBATCH_EXTRA="--qos=high"] \
#     bash scripts/slurm/submit.sh online_po|easy_online_po|offline_po_datagen|offline_po_dpo [Hydra overrides ...]
# GPUS_PER_NODE=0 runs CPU tasks (TASKS_PER_NODE then sets how many; default 1).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
stage=${1:?usage: submit.sh online_po|easy_online_po|offline_po_datagen|offline_po_dpo [Hydra overrides]}
shift
case "$stage" in
  online_po | easy_online_po | offline_po_datagen | offline_po_dpo) ;;
  # The pair stage needs no GPU: run recipes/offline_po_pairs.py on the login node (seconds).
  *) echo "submit.sh: stage=$stage is invalid; allowed: online_po, easy_online_po, offline_po_datagen, offline_po_dpo" >&2; exit 2 ;;
esac

nodes=${NODES:-1}
gpus_per_node=${GPUS_PER_NODE:-8}
tasks_per_node=${TASKS_PER_NODE:-$((gpus_per_node > 0 ? gpus_per_node : 1))}
python=${MAGPIE_PYTHON:-python}

# shellcheck source=scripts/slurm/common.sh
source "$repo/scripts/slurm/common.sh"
magpie_check_launcher_settings
magpie_split_args "$@"
(cd "$repo" && "$python" "recipes/$stage.py" "${MAGPIE_HYDRA_OPTIONS[@]}" "trainer.num_nodes=$nodes" \
  "trainer.devices=$tasks_per_node" "${MAGPIE_OVERRIDES[@]}" dry_run=true)

options=(--nodes="$nodes" --ntasks-per-node="$tasks_per_node" --cpus-per-task="${CPUS_PER_TASK:-8}" --time="${TIME:-04:00:00}")
if ((gpus_per_node > 0)); then options+=(--gpus-per-node="$gpus_per_node"); fi
if [[ -n "${ACCOUNT:-}" ]]; then options+=(--account="$ACCOUNT"); fi
if [[ -n "${PARTITION:-}" ]]; then options+=(--partition="$PARTITION"); fi
# shellcheck disable=SC2206 # SBATCH_EXTRA is a list of options, split on purpose
if [[ -n "${SBATCH_EXTRA:-}" ]]; then options+=($SBATCH_EXTRA); fi

export MAGPIE_REPO=$repo
exec sbatch "${options[@]}" "$repo/scripts/slurm/$stage.sbatch" "$@"
