#!/usr/bin/env bash
# Offline PO end to end: DataGen (generate and score) -> pairs (chosen/rejected) -> DPO, each stage reading the
# previous stage's output by the path that stage prints.
#
#   bash scripts/offline_po.sh --tiny
#       the embedded tiny default on CPU (fixtures built offline; each text repeated twice: groups of 2)
#   bash scripts/offline_po.sh COMMON... -- DATAGEN... -- PAIRS... -- DPO...
#       COMMON goes to DataGen and DPO (init_from_ptl_ckpt=, codecmodel_path=, +whisper.dtype=, ...); each later
#       group to its stage. For example:
#   bash scripts/offline_po.sh init_from_ptl_ckpt=/ckpt/magpie.ckpt codecmodel_path=/ckpt/codec.nemo \
#       -- data.test_manifest=/data/texts_contexts_x6.json model.pref_set_language=it \
#       -- pairs.group_size=6 pairs.cer_threshold=0.01 -- trainer.max_steps=2000
# DataGen's manifest repeats each text/context item pairs.group_size times on consecutive lines.
# Runs in the environment install.sh chose (./.venv outside one).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh

common=() datagen=() pairs=() dpo=() datagen_cfg=() pairs_cfg=() dpo_cfg=()
if [[ "${1:-}" == --tiny ]]; then
  shift
  export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
  tiny=${MAGPIE_TINY_ROOT:-$PWD/.tiny}
  python scripts/make_tiny_fixtures.py --out "$tiny" >/dev/null
  texts="$tiny/manifest_x2.json"
  python - "$tiny/manifest.json" "$texts" <<'PY'
import sys
lines = [line for line in open(sys.argv[1]) if line.strip()]
open(sys.argv[2], "w").writelines(line for line in lines for _ in range(2))
PY
  common=("tiny_root=$tiny")
  datagen=("data.test_manifest=$texts")
  datagen_cfg=(--config-name offline_po_datagen_tiny) pairs_cfg=(--config-name offline_po_pairs_tiny)
  dpo_cfg=(--config-name offline_po_dpo_tiny)
fi
group=0
for argument in "$@"; do
  if [[ "$argument" == -- ]]; then
    group=$((group + 1))
    continue
  fi
  case $group in
    0) common+=("$argument") ;;
    1) datagen+=("$argument") ;;
    2) pairs+=("$argument") ;;
    3) dpo+=("$argument") ;;
    *) echo "offline_po.sh: at most three '--' (COMMON -- DATAGEN -- PAIRS -- DPO)" >&2; exit 2 ;;
  esac
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run_stage() {  # run_stage NAME ARGS...: the stage's output goes to the terminal and to $log
  local name=$1
  shift
  echo "[offline_po] $name" >&2
  python "recipes/$name.py" "$@" 2>&1 | tee "$log"
}
last_value() {  # last_value KEY: the last "KEY=VALUE" / "KEY: VALUE" a stage printed
  sed -n "s/.*\[magpie\] .*$1[=:] \{0,1\}\([^ ]*\).*/\1/p" "$log" | tail -n 1
}

run_stage offline_po_datagen "${datagen_cfg[@]}" "${common[@]}" "${datagen[@]}"
datagen_run=$(last_value run_folder)
[[ -n "$datagen_run" ]] || { echo "offline_po.sh: DataGen printed no run folder" >&2; exit 1; }

run_stage offline_po_pairs "${pairs_cfg[@]}" "datagen_run=$datagen_run" "${pairs[@]}"
train=$(last_value data.train_manifest)
validation=$(last_value data.val_manifest)

run_stage offline_po_dpo "${dpo_cfg[@]}" "${common[@]}" "data.train_manifest=$train" "data.val_manifest=$validation" \
  "${dpo[@]}"
dpo_run=$(last_value run_folder)
echo "[offline_po] done: DataGen $datagen_run; pairs $(dirname "$train"); DPO $dpo_run (model: $dpo_run/checkpoints)" >&2
