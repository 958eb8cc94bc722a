"""Benchmark the Whisper reward model per dtype: weights, peak memory, latency, samples/s, agreement with fp32.

    python scripts/benchmark_whisper_dtype.py --audio MANIFEST_OR_WAV_DIR [--dtypes fp32,fp16,bf16,auto,ct2:int8]
        [--batch-sizes 1,8] [--num-samples 100] [--language it] [--device auto|cpu|cuda]
        [--config-name online_po] [--out benchmarks/out/whisper_dtype] [Hydra overrides ...]

The Whisper checkpoint comes from the recipe config, through the same keys the recipes read
(model.whisper.pretrained, or the +whisper.pretrained=... shortcut). Each dtype runs in a fresh process.
With a manifest that has `text` (and `group`, from synthesize_speech_manifest.py --variants), the table adds what
GRPO uses: per-utterance CER against the text for each dtype, its mean and max difference from the reference
(fp32), and how often a group's best and worst sample change. Timing ratios use each dtype's CPU seconds, which a
busy shared machine does not distort the way wall clock does.
Writes OUT.json (everything, transcripts included) and OUT.md (the table), and prints the table."""

import argparse
import json
import os
import sys

from nemo_ext_tools.whisper_benchmark import (
    BenchmarkSpec,
    audio_files,
    ct2_dtype,
    manifest_columns,
    measure_dtype,
    render_table,
    run_benchmark,
)


def spec_from_args(args) -> BenchmarkSpec:
    import torch
    from hydra import compose, initialize_config_dir

    from nemo_ext.settings.fields import plain
    from nemo_ext.settings.whisper import WhisperSettings, fold_whisper_shortcut
    from nemo_ext.whisper_dtype import parse_whisper_dtype

    conf_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "conf")
    with initialize_config_dir(config_dir=os.path.abspath(conf_dir), version_base="1.3"):
        cfg = fold_whisper_shortcut(plain(compose(config_name=args.config_name, overrides=args.overrides)))
    whisper = WhisperSettings.parse(cfg["model"]["whisper"])
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    for dtype in dtypes:
        if ct2_dtype(dtype) is None:  # ct2:<dtype> rows are the CTranslate2 backend, checked by ct2_dtype
            parse_whisper_dtype(dtype, key="--dtypes")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    texts, groups = manifest_columns(args.audio, args.num_samples)
    return BenchmarkSpec(
        pretrained=whisper.pretrained,
        files=[os.path.abspath(f) for f in audio_files(args.audio, args.num_samples)],
        texts=texts,
        groups=groups,
        dtypes=dtypes,
        batch_sizes=[int(b) for b in args.batch_sizes.split(",")],
        language=args.language or None,
        device=device,
        attn_implementation=whisper.attn_implementation,
        ct2_pretrained=args.ct2_pretrained,
    )


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        _, _, spec_path, dtype, out_path = sys.argv
        with open(spec_path) as f:
            spec = BenchmarkSpec(**json.load(f))
        with open(out_path, "w") as f:
            json.dump(measure_dtype(spec, dtype), f)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audio", required=True, help="manifest (.json lines with audio_filepath) or folder of wavs")
    parser.add_argument("--dtypes", default="fp32,fp16,bf16,auto")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--num-samples", type=int, default=100)
    parser.add_argument("--language", default="en", help="'' for none (English-only checkpoints ignore it)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--config-name", default="online_po")
    parser.add_argument("--ct2-pretrained", help="CTranslate2 directory of ct2:<dtype> rows (<pretrained>-ct2)")
    parser.add_argument("--out", default="benchmarks/out/whisper_dtype")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model.whisper.pretrained=/models/w")
    args = parser.parse_args()
    report = run_benchmark(spec_from_args(args))
    table = render_table(report)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(f"{args.out}.json", "w") as f:
        json.dump(report, f, indent=1)
    with open(f"{args.out}.md", "w") as f:
        f.write(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
