"""A trained policy as a `.nemo` for NeMo's inference (MagpieTTSModel.restore_from):
python scripts/export_nemo.py RUN/checkpoints/CHECKPOINT.ckpt OUT.nemo [--codecmodel-path CODEC]"""

import argparse

from nemo_ext.nemo_files import export_policy

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("checkpoint", help="a checkpoint of a GRPO or DPO run (its checkpoints/ folder)")
    parser.add_argument("out", help="the .nemo to write")
    parser.add_argument("--codecmodel-path", help="where the codec is now (default: the path the run used)")
    arguments = parser.parse_args()
    print(export_policy(arguments.checkpoint, arguments.out, arguments.codecmodel_path))
