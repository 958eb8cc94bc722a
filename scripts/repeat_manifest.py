"""DataGen's input from a plain manifest: each line repeated GROUP_SIZE times on consecutive lines (one group of
samples per text/context item for the pair stage; GROUP_SIZE = pairs.group_size, 6 by default).
    python scripts/repeat_manifest.py plain.json datagen_input.json [--group-size 6]"""

import argparse

from nemo_ext.manifests import write_repeated_manifest

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("manifest")
    parser.add_argument("out")
    parser.add_argument("--group-size", type=int, default=6)
    arguments = parser.parse_args()
    lines = write_repeated_manifest(arguments.manifest, arguments.out, arguments.group_size)
    print(f"{arguments.out}: {lines} lines ({lines // arguments.group_size} items x {arguments.group_size})")
