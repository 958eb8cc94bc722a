"""Synthesize speech with espeak-ng into wavs + a NeMo-style manifest (audio_filepath, text, duration, language,
group).

    python scripts/synthesize_speech_manifest.py OUT_DIR [--language en|it] [--count 100] [--variants 1]

`--variants K` speaks each sentence K times with other voices and speeds (one `group` per sentence), for
measuring how rankings within a group move. Real speech for CPU benchmarks and tests of a pretrained Whisper
where no dataset can be downloaded."""

import argparse
import itertools
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


# Built sentences: every subject with every predicate (100 per language), after the hand-written ones.
SUBJECTS = {
    "en": [
        "My brother",
        "The old teacher",
        "Our neighbour",
        "A young doctor",
        "The baker",
        "Your sister",
        "The captain",
        "A tired student",
        "The gardener",
        "Their uncle",
    ],
    "it": [
        "Mio fratello",
        "La vecchia maestra",
        "Il nostro vicino",
        "Un giovane medico",
        "Il fornaio",
        "Tua sorella",
        "Il capitano",
        "Uno studente stanco",
        "Il giardiniere",
        "Lo zio di Marco",
    ],
}
PREDICATES = {
    "en": [
        "reads the newspaper every morning.",
        "walks to the station before eight.",
        "cooks pasta on Fridays.",
        "paints the fence in the summer.",
        "visits the market on Saturday.",
        "writes long letters to friends.",
        "drinks tea without sugar.",
        "repairs old bicycles in the garage.",
        "plays chess after dinner.",
        "waters the plants twice a week.",
    ],
    "it": [
        "legge il giornale ogni mattina.",
        "va alla stazione prima delle otto.",
        "cucina la pasta il venerdì.",
        "dipinge il cancello in estate.",
        "visita il mercato il sabato.",
        "scrive lunghe lettere agli amici.",
        "beve il tè senza zucchero.",
        "ripara vecchie biciclette in garage.",
        "gioca a scacchi dopo cena.",
        "innaffia le piante due volte alla settimana.",
    ],
}
HAND_WRITTEN = {
    "en": SENTENCES,
    "it": [
        "Oggi il tempo è molto bello.",
        "Vorrei una tazza di caffè, per favore.",
        "Il treno parte fra dieci minuti.",
        "La biblioteca è chiusa la domenica.",
        "Grazie mille per il tuo aiuto.",
    ],
}
# espeak-ng variants: (voice suffix, words per minute); the first is the plain voice at espeak's default speed.
VARIANTS = [("", 175), ("+m3", 150), ("+f2", 195), ("+m7", 165), ("+f4", 140)]


def sentences(language: str) -> list[str]:
    built = [f"{s} {p}" for s, p in itertools.product(SUBJECTS[language], PREDICATES[language])]
    return HAND_WRITTEN[language] + built


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--language", default="en", choices=sorted(SUBJECTS), help="espeak-ng voice language")
    parser.add_argument("--count", type=int, default=24, help="sentences (at most 124 English, 105 Italian)")
    parser.add_argument("--variants", type=int, default=1, help=f"voices/speeds per sentence (1 to {len(VARIANTS)})")
    args = parser.parse_args()
    if not shutil.which("espeak-ng"):
        parser.error("espeak-ng is not installed (apt-get install espeak-ng)")
    texts = sentences(args.language)
    if not 1 <= args.count <= len(texts):
        parser.error(f"--count={args.count} is invalid; allowed: 1 to {len(texts)} for --language {args.language}")
    if not 1 <= args.variants <= len(VARIANTS):
        parser.error(f"--variants={args.variants} is invalid; allowed: 1 to {len(VARIANTS)}")
    out_dir = os.path.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    manifest = os.path.join(out_dir, "manifest.json")
    with open(manifest, "w") as f:
        for i, text in enumerate(texts[: args.count]):
            for v, (voice, speed) in enumerate(VARIANTS[: args.variants]):
                path = os.path.join(out_dir, f"speech_{i:03d}_{v}.wav" if args.variants > 1 else f"speech_{i:02d}.wav")
                command = ["espeak-ng", "-v", f"{args.language}{voice}", "-s", str(speed), "-w", path, text]
                subprocess.run(command, check=True)
                row = {
                    "audio_filepath": path,
                    "text": text,
                    "duration": round(sf.info(path).duration, 3),
                    "language": args.language,
                    "group": i,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(manifest)


if __name__ == "__main__":
    main()
