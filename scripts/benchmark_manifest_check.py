"""Time the manifest check (nemo_ext/manifests.py) on a large manifest: it reads JSON and checks that files exist,
without decoding audio. Writes a markdown table (default benchmarks/manifest_check.md).

python scripts/benchmark_manifest_check.py [--lines 100000] [--files 1000] [--out benchmarks/manifest_check.md]"""

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import soundfile as sf

from nemo_ext.manifests import check_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--files", type=int, default=1000, help="distinct wav files the lines point at")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/manifest_check.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        wavs = []
        for i in range(args.files):
            path = os.path.join(work, f"utt{i}.wav")
            sf.write(path, np.zeros(22050, dtype=np.float32), 22050)
            wavs.append(path)
        manifest = os.path.join(work, "manifest.json")
        with open(manifest, "w") as f:
            for i in range(args.lines):
                row = {
                    "audio_filepath": wavs[i % args.files],
                    "context_audio_filepath": wavs[(i + 1) % args.files],
                    "text": f"sentence number {i}.",
                    "duration": 1.0 + (i % 7),
                }
                f.write(json.dumps(row) + "\n")
        size_mb = os.path.getsize(manifest) / 1e6
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            summary = check_manifest("data.train_manifest", manifest, 0.2, 20.0)
            times.append(time.perf_counter() - start)
    assert summary.kept == args.lines
    lines = [
        "# Manifest check speed",
        "",
        f"`python scripts/benchmark_manifest_check.py --lines {args.lines} --files {args.files}` on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}.",
        "",
        "| lines | manifest size | distinct wav files | check time (each of the runs) |",
        "|---|---|---|---|",
        f"| {args.lines:,} | {size_mb:.1f} MB | {args.files} | {', '.join(f'{t:.2f} s' for t in times)} |",
        "",
        "Every line is parsed, its keys and duration checked, and both audio paths checked with `os.path.isfile`;",
        "no audio is decoded.",
        "",
    ]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
