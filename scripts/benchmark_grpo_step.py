"""A GRPO step at the published size: NeMo 3.0.0's defaults against ours, each lever alone and all together, in one
run (nemo_ext_tools/grpo_step_benchmark.py). A benchmark, never a test: minutes per step on a CPU.

    bash scripts/fetch_pretrained_whisper.sh base && python scripts/make_tiny_fixtures.py --size published
    python scripts/benchmark_grpo_step.py [--max-decoder-steps 64] [--cycles 2] [--accelerator cpu|gpu]
        [--out benchmarks/grpo_step_published_size.md] [--no-equivalence]
    python scripts/benchmark_grpo_step.py --rollout-decoders 48,96,192 [--datagen-frames 96]
        (the three rollout decoders at each length, one run: benchmarks/rollout_decoders_published_size.md)
    python scripts/benchmark_grpo_step.py --render-from benchmarks/grpo_step_published_size.json  (the markdown
        again from a run's figures, nothing re-measured; a --rollout-decoders run's JSON gives its own markdown)
"""

import argparse
import json
import os
import shlex
import sys

from nemo_ext_tools.grpo_step_benchmark import REPO, render, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-decoder-steps", type=int, default=64, help="frames per rollout (NeMo's default: 430)")
    parser.add_argument("--cycles", type=int, default=2, help="cycles of the variants; the first is warm-up")
    parser.add_argument("--accelerator", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "grpo_step_published_size.md"))
    parser.add_argument("--no-equivalence", action="store_true", help="skip the KV-cache rollout comparison")
    parser.add_argument("--rollout-decoders", help="lengths, comma-separated: the three rollout decoders at each")
    parser.add_argument("--datagen-frames", type=int, default=96, help="with --rollout-decoders: DataGen's item")
    parser.add_argument("--render-from", help="a run's JSON: write its markdown again (to --out), measure nothing")
    args = parser.parse_args()
    if args.render_from:
        with open(args.render_from) as f:
            rollout_decoders_run = "datagen_seconds_per_item" in json.load(f)
        if rollout_decoders_run:
            from nemo_ext_tools import rollout_decoder_benchmark

            print(rollout_decoder_benchmark.render(args.render_from, os.path.splitext(args.render_from)[0] + ".md"))
        else:
            print(render(args.render_from, args.out))
        return
    command = "python scripts/benchmark_grpo_step.py " + shlex.join(sys.argv[1:])
    if args.rollout_decoders:
        from nemo_ext_tools import rollout_decoder_benchmark

        lengths = tuple(int(n) for n in args.rollout_decoders.split(","))
        out = args.out
        if out == parser.get_default("out"):
            out = os.path.join(REPO, "benchmarks", "rollout_decoders_published_size.md")
        print(rollout_decoder_benchmark.run(lengths, args.datagen_frames, args.accelerator, out, command.strip()))
        return
    if args.cycles < 2:
        parser.error("--cycles must be at least 2 (the first cycle is warm-up)")
    run(args.max_decoder_steps, args.cycles, args.accelerator, args.out, command.strip(), not args.no_equivalence)


if __name__ == "__main__":
    main()
