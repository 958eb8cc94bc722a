# shellcheck shell=bash
# Sourced by the sbatch scripts: runs one recipe stage under srun, one task per GPU.
# Everything here is derived from the SLURM allocation; nothing is typed twice.

# The recipes' exit code for "stopped on request, progress saved, resumable" (EXIT_STOPPED in
# nemo_ext/recipes/stopping.py).
MAGPIE_EXIT_STOPPED=75
# ... and for "config error", refused before any model was built (nemo_ext/recipes/entry.py).
MAGPIE_EXIT_CONFIG_ERROR=2

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

# The user's arguments without any resume= (the command that continues a run names its folder once), each followed
# by a space.
magpie_without_resume() {
  local argument
  for argument in "$@"; do
    case "$argument" in
      resume=* | +resume=* | ++resume=*) ;;
      *) printf '%s ' "$argument" ;;
    esac
  done
}

# The launcher's own settings, checked on the login node (submit.sh) and again on the batch host.
magpie_check_launcher_settings() {
  if ! [[ "${MAGPIE_MAX_RESTARTS:-2}" =~ ^[0-9]+$ ]]; then
    echo "launcher: MAGPIE_MAX_RESTARTS=${MAGPIE_MAX_RESTARTS} is invalid; allowed: a whole number >= 0 (in-place" \
      "restarts after a dead or hung rank; default 2)" >&2
    return 2
  fi
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
  magpie_check_launcher_settings || return
  magpie_split_args "$@"
  local arguments=("${MAGPIE_HYDRA_OPTIONS[@]}" "trainer.num_nodes=$nodes" "trainer.devices=$tasks_per_node"
    "${MAGPIE_OVERRIDES[@]}")
  echo "[magpie] job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}): $stage on $nodes node(s) x $tasks_per_node task(s), rendezvous $MASTER_ADDR:$MASTER_PORT"

  # Re-validate on the batch host before starting every rank (inputs can vanish while the job queues). The dry
  # run also names the run folder (the job id's, or resume='s): the ranks' heartbeats are read there on a failure.
  local checked run_dir
  local dry_run_status=0
  checked=$(cd "$repo" && "$python" "$recipe" "${arguments[@]}" dry_run=true) || dry_run_status=$?
  if ((dry_run_status != 0)); then
    echo "[magpie] job $SLURM_JOB_ID: a config error on the batch host (exit $dry_run_status, the line above):" \
      "nothing was started. Fix the config and submit again" >&2
    return "$dry_run_status"
  fi
  echo "$checked"
  run_dir=$(sed -n 's/^\[dry-run\] run folder: //p' <<<"$checked" | head -n 1)

  # One task per GPU. On SIGUSR1 (--signal in the sbatch script, before the time limit) or SIGTERM, every rank
  # stops at the next batch boundary, a checkpoint is saved, the W&B run is closed, and the recipe exits 75
  # (nemo_ext/recipes/stopping.py). Only then, with srun returned, is the job requeued: the next attempt
  # continues the same run folder and W&B run (both named by the job id) from that checkpoint.
  # Any other failure (a rank killed, crashed, or hung past faults.collective_timeout_s: srun then ends every
  # rank) is reported (which rank, which node, how it ended, where the heartbeats stopped) and restarted in place,
  # from the run folder's newest checkpoint, at most MAGPIE_MAX_RESTARTS times and never twice from a failure at
  # the same step (a crash that repeats would only burn the allocation).
  cd "$repo" || return
  local job=${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}
  job=${job:-$SLURM_JOB_ID}
  local max_restarts=${MAGPIE_MAX_RESTARTS:-2} restarts=0 failed_step="" status step started srun_log
  local base_port=$MASTER_PORT
  srun_log=$(mktemp "${TMPDIR:-/tmp}/magpie-srun-$job.XXXXXX")
  while :; do
    status=0
    started=$(date +%s)
    # A fresh rendezvous port per restart: the previous attempt's store may still hold its port for a moment.
    MASTER_PORT=$((base_port + restarts))
    # srun's stderr (the ranks' and srun's own "task N: Killed" lines) goes to the job log and, for the report, to
    # a file. Inside a `|| true` list errexit is off, so the pipeline's failure is read from PIPESTATUS.
    {
      srun --kill-on-bad-exit=1 --ntasks-per-node="$tasks_per_node" "$python" "$recipe" "${arguments[@]}" \
        2>&1 1>&3 3>&- | tee "$srun_log" 1>&2 3>&-
      status=${PIPESTATUS[0]}
    } 3>&1 || true
    if ((status == 0)); then
      break
    fi
    if ((status == MAGPIE_EXIT_CONFIG_ERROR)) || grep -q '^config error: ' "$srun_log"; then
      # The recipes exit 2 only for a config error (nemo_ext/recipes/entry.py), found before any model is built:
      # the same launch would be refused again, so it is never restarted. srun's own status is not enough: when one
      # rank refuses first, --kill-on-bad-exit kills the others and srun may report their signal instead of the 2.
      status=$MAGPIE_EXIT_CONFIG_ERROR
      echo "[magpie] job $job: a config error (exit $status, the ranks' 'config error:' line above): not" \
        "restarting. Fix the config and submit again" >&2
      break
    fi
    if ((status == MAGPIE_EXIT_STOPPED)); then
      echo "[magpie] job $job stopped with its progress saved (exit $status): requeueing it"
      scontrol requeue "$job"
      break
    fi
    echo "[magpie] job $job: the job step failed (exit $status)" >&2
    step=set-up
    if [[ -n "$run_dir" ]]; then
      step=$("$python" -m nemo_ext.recipes.fault_report --run-folder "$run_dir" --since "$started" \
        --srun-log "$srun_log" --ranks $((nodes * tasks_per_node))) || step=set-up
    fi
    if [[ "$step" == finished ]]; then
      # A rank ended badly after every rank had finished and saved (e.g. a crash while its interpreter shut down):
      # the run is complete. Restarting it would only be refused, and unfinished work is all a non-zero exit means.
      echo "[magpie] job $job: finished; a rank ended badly after the work was done (above), nothing to restart" >&2
      status=0
      break
    fi
    local point="at step $step" continue_with
    if [[ "$step" == set-up ]]; then point="in set-up"; fi
    continue_with="bash scripts/slurm/submit.sh $stage $(magpie_without_resume "$@")resume=${run_dir:-<its run folder>}"
    if ((restarts >= max_restarts)); then
      echo "[magpie] job $job: failed $point; not restarting: $restarts of MAGPIE_MAX_RESTARTS=$max_restarts" \
        "restarts used. Continue it with: $continue_with" >&2
      break
    fi
    if [[ "$step" == "$failed_step" ]]; then
      echo "[magpie] job $job: failed twice $point: a crash that repeats; not restarting. Fix the cause, then" \
        "continue it with: $continue_with" >&2
      break
    fi
    failed_step=$step
    restarts=$((restarts + 1))
    echo "[magpie] job $job: restart $restarts of $max_restarts in place (failed $point), from the newest" \
      "checkpoint of ${run_dir:-the run folder}"
  done
  rm -f "$srun_log"
  return "$status"
}
