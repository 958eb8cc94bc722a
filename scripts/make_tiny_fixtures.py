"""Build the embedded tiny default (wavs, manifests, tiny codec / MagpieTTS / reward models / Whisper) offline.

python scripts/make_tiny_fixtures.py [--out .tiny] [--force]
"""

import argparse
import json
from dataclasses import asdict

from nemo_ext_tools.tiny_fixtures import build_tiny_fixtures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".tiny", help="folder to build into (default: .tiny)")
    parser.add_argument("--force", action="store_true", help="rebuild even when already built")
    args = parser.parse_args()
    print(json.dumps(asdict(build_tiny_fixtures(args.out, force=args.force)), indent=1))


if __name__ == "__main__":
    main()
