#!/usr/bin/env bash
# Two GRPO ranks on this machine, set up as 2 nodes x 1 device through the SLURM environment variables srun
# would set (Lightning then uses SLURMEnvironment), on the tiny fixtures; then the memory figures are read
# back from the offline W&B run and from each rank's memory/rank<R>.jsonl.
#   bash scripts/two_rank_telemetry_demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-runs/two_rank_demo}")
tiny=${MAGPIE_TINY_ROOT:-$PWD/.tiny}
job_id=${DEMO_JOB_ID:-777}
python scripts/make_tiny_fixtures.py --out "$tiny" >/dev/null
rm -rf "$out"
mkdir -p "$out"
port=$(python -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
pids=()
for rank in 0 1; do
  SLURM_JOB_ID=$job_id SLURM_JOB_NAME=demo SLURM_NTASKS=2 SLURM_NTASKS_PER_NODE=1 SLURM_NNODES=2 \
    SLURM_JOB_NUM_NODES=2 SLURM_PROCID=$rank SLURM_NODEID=$rank SLURM_LOCALID=0 SLURM_NODELIST=localhost \
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WANDB_SILENT=true \
    python recipes/online_po.py --config-name online_po_tiny "tiny_root=$tiny" "exp_manager.exp_dir=$out" \
    trainer.num_nodes=2 trainer.devices=1 trainer.max_epochs=2 >"$out/rank$rank.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
grep -h "Memory summary" "$out"/rank*.log
python scripts/read_wandb_offline.py "$out" --prefix whisper/ --prefix cpu/
for rank in 0 1; do
  echo "rank $rank local figures:"
  cat "$out/tiny_online_po/$job_id/memory/rank$rank.jsonl"
done
