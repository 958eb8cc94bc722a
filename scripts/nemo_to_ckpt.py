"""A released MagpieTTS `.nemo` as the checkpoint the recipes start from (init_from_ptl_ckpt, and the GRPO / DPO
reference): python scripts/nemo_to_ckpt.py MODEL.nemo OUT_DIR  (prints the checkpoint's path)."""

import argparse

from nemo_ext.nemo_files import checkpoint_from_nemo

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("nemo", help="the .nemo file")
    parser.add_argument("out_dir", help="folder for <name>.ckpt and the tokenizers' files (artifacts/)")
    arguments = parser.parse_args()
    print(checkpoint_from_nemo(arguments.nemo, arguments.out_dir))
