# shellcheck shell=bash
# Sourced by the sbatch scripts: runs one recipe stage under srun, one task per GPU.
# Everything here is derived from the SLURM allocation; nothing is typed twice.

# The recipes' exit code for "stopped on request, progress saved, resumable" (EXIT_STOPPED in
# nemo_ext/recipes/stopping.py).
MAGPIE_EXIT_STOPPED=75

# Ranks: srun sets SLURM_PROCID / SLURM_LOCALID / SLURM_NODEID per task and Lightning's SLURMEnvironment reads
# them. Rendezvous: the first node of the allocation, a port derived from the job id (stable across requeues).
# MASTER_ADDR is an address, not the node's SLURM name: that name need not resolve on the nodes (then the
# rendezvous hung until the time limit). SLURM's own NodeAddr for the node (how slurmctld reaches it) first,
# resolved to IPv4; fail in seconds when nothing resolves. An exported MASTER_ADDR wins.
magpie_export_rendezvous() {
  local first node_addr address candidate
  first=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
  node_addr=$(scontrol show node "$first" 2>/dev/null | sed -n 's/.*NodeAddr=\([^ ]*\).*/\1/p' | head -n 1)
  address=${MASTER_ADDR:-}
  for candidate in "$node_addr" "$first"; do
    [[ -n "$address" || -z "$candidate" ]] && continue
    address=$(getent ahostsv4 "$candidate" | awk 'NR == 1 {print $1}' || true)
  done
  if [[ -z "$address" ]]; then
    echo "[magpie] the first node $first (NodeAddr ${node_addr:-none}) resolves to no IPv4 address; export" \
      "MASTER_ADDR=<an address the other nodes reach> before submitting" >&2
    return 2
  fi
  MASTER_ADDR=$address
  MASTER_PORT=${MASTER_PORT:-$((20000 + SLURM_JOB_ID % 20000))}
  export MASTER_ADDR MASTER_PORT
}

# SLURM_NTASKS_PER_NODE can read "8(x2)"; sbatch --ntasks-per-node makes it uniform.
magpie_tasks_per_node() {
  local value=${SLURM_NTASKS_PER_NODE:-${SLURM_TASKS_PER_NODE:-1}}
  echo "${value%%(*}"
}

# Hydra's options (--config-name X, -cn X, --config-dir X) must come before its overrides, while the launcher
# puts its own topology overrides first: split the user's arguments into MAGPIE_HYDRA_OPTIONS and
# MAGPIE_OVERRIDES.
magpie_split_args() {
  MAGPIE_HYDRA_OPTIONS=()
  MAGPIE_OVERRIDES=()
  while (($#)); do
    case "$1" in
      --config-name | -cn | --config-dir | -cd | --config-path | -cp)
        MAGPIE_HYDRA_OPTIONS+=("$1" "${2:?$1 needs a value}")
        shift 2
        ;;
      --config-name=* | --config-dir=* | --config-path=*)
        MAGPIE_HYDRA_OPTIONS+=("$1")
        shift
        ;;
      trainer.num_nodes=* | trainer.devices=* | +trainer.num_nodes=* | +trainer.devices=* | ++trainer.num_nodes=* | ++trainer.devices=*)
        echo "launcher: $1 is not accepted; the topology comes from the allocation: set NODES / GPUS_PER_NODE" \
          "(submit.sh) or sbatch --nodes / --ntasks-per-node" >&2
        return 2
        ;;
      *)
        MAGPIE_OVERRIDES+=("$1")
        shift
        ;;
    esac
  done
}

magpie_run_stage() {
  local stage=$1
  shift
  local repo=${MAGPIE_REPO:-${SLURM_SUBMIT_DIR:-$PWD}}
  local python=${MAGPIE_PYTHON:-python}
  local nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
  local tasks_per_node
  tasks_per_node=$(magpie_tasks_per_node)

  # Compute nodes usually have no internet: read models from the shared cache filled on the login node.
  export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
  export TRANSFORMERS_OFFLINE=${TRANSFORMERS_OFFLINE:-1}
  # NCCL: fail fast on a dead peer instead of hanging until the time limit.
  export TORCH_NCCL_ASYNC_ERROR_HANDLING=${TORCH_NCCL_ASYNC_ERROR_HANDLING:-1}
  export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
  magpie_export_rendezvous || return

  local recipe="$repo/recipes/$stage.py"
  magpie_split_args "$@"
  local arguments=("${MAGPIE_HYDRA_OPTIONS[@]}" "trainer.num_nodes=$nodes" "trainer.devices=$tasks_per_node"
    "${MAGPIE_OVERRIDES[@]}")
  echo "[magpie] job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): $stage on $nodes node(s) x $tasks_per_node task(s), rendezvous $MASTER_ADDR:$MASTER_PORT"

  # Re-validate on the batch host before starting every rank (inputs can vanish while the job queues).
  (cd "$repo" && "$python" "$recipe" "${arguments[@]}" dry_run=true)

  # One task per GPU. On SIGUSR1 (--signal in the sbatch script, before the time limit) or SIGTERM, every rank
  # stops at the next batch boundary, a checkpoint is saved, the W&B run is closed, and the recipe exits 75
  # (nemo_ext/recipes/stopping.py). Only then, with srun returned, is the job requeued: the next attempt
  # continues the same run folder and W&B run (both named by the job id) from that checkpoint.
  cd "$repo" || return
  local status=0
  srun --kill-on-bad-exit=1 --ntasks-per-node="$tasks_per_node" "$python" "$recipe" "${arguments[@]}" || status=$?
  if ((status == MAGPIE_EXIT_STOPPED)); then
    local job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
    job=${job:-$SLURM_JOB_ID}
    echo "[magpie] job $job stopped with its progress saved (exit $status): requeueing it"
    scontrol requeue "$job"
  fi
  return "$status"
}
