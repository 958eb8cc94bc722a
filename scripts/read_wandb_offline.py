"""Print what an offline W&B run recorded (no upload, no account): config, then each logged row.

    python scripts/read_wandb_offline.py RUN_FILE_OR_DIR [--prefix whisper/ --prefix cpu/]

RUN_FILE_OR_DIR: a run-*.wandb file or any folder above it (the newest run found is read)."""

import argparse
import json
import os

from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--prefix", action="append", default=[], help="only keys starting with this (repeatable)")
    args = parser.parse_args()
    path = args.path
    if os.path.isdir(path):
        runs = find_offline_runs(path)
        if not runs:
            parser.error(f"no offline-run-*/run-*.wandb under {path}")
        path = runs[-1]
    run = read_offline_run(path)

    def keep(key):
        return not args.prefix or key.startswith(tuple(args.prefix))

    print(f"run {path} group={run.group!r}")
    print("config:", json.dumps({k: v for k, v in run.config.items() if keep(k) and not k.startswith("_")}))
    for row in run.history:
        shown = {k: v for k, v in sorted(row.items()) if keep(k) and not k.startswith("_")}
        if shown:
            print(f"step {row.get('trainer/global_step')}:", json.dumps(shown))


if __name__ == "__main__":
    main()
