"""Synthesize English speech with espeak-ng into wavs + a NeMo-style manifest (audio_filepath, text, duration).

    python scripts/synthesize_speech_manifest.py OUT_DIR [--count 24]

Real speech for CPU benchmarks and tests of a pretrained Whisper where no dataset can be downloaded."""

import argparse
import json
import os
import shutil
import subprocess

import soundfile as sf

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Please call me tomorrow morning.",
    "The weather is nice today.",
    "I would like a cup of coffee.",
    "She sells sea shells by the sea shore.",
    "The meeting starts at nine o'clock.",
    "Turn left at the next traffic light.",
    "My favourite colour is green.",
    "We are going to the park this afternoon.",
    "Can you help me with my homework?",
    "The train leaves in ten minutes.",
    "He plays the guitar every evening.",
    "Open the window, it is too warm in here.",
    "The library is closed on Sundays.",
    "Thank you very much for your help.",
    "The children are playing in the garden.",
    "Where did you put the keys?",
    "This book is very interesting.",
    "Dinner will be ready in half an hour.",
    "The cat is sleeping on the sofa.",
    "I forgot my umbrella at home.",
    "The museum has a new exhibition.",
    "Please speak a little more slowly.",
    "The flowers bloom in the spring.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--count", type=int, default=len(SENTENCES), help=f"sentences (at most {len(SENTENCES)})")
    args = parser.parse_args()
    if not shutil.which("espeak-ng"):
        parser.error("espeak-ng is not installed (apt-get install espeak-ng)")
    if not 1 <= args.count <= len(SENTENCES):
        parser.error(f"--count={args.count} is invalid; allowed: 1 to {len(SENTENCES)}")
    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest = os.path.join(out_dir, "manifest.json")
    with open(manifest, "w") as f:
        for i, text in enumerate(SENTENCES[: args.count]):
            path = os.path.join(out_dir, f"speech_{i:02d}.wav")
            subprocess.run(["espeak-ng", "-w", path, text], check=True)
            f.write(
                json.dumps({"audio_filepath": path, "text": text, "duration": round(sf.info(path).duration, 3)}) + "\n"
            )
    print(manifest)


if __name__ == "__main__":
    main()
