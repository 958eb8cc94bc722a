"""Why NeMo's KV-cache rollouts part from its uncached ones at the published size: the same comparison as the step
benchmark's (same seed, same weights, greedy and sampled), once with NeMo's inference attention prior on (its
default) and once with it off. A benchmark, not a test: minutes on a CPU.

    bash scripts/fetch_pretrained_whisper.sh base && python scripts/make_tiny_fixtures.py --size published
    python scripts/kv_cache_divergence.py [--max-decoder-steps 32] [--out benchmarks/kv_cache_divergence.md]
"""

import argparse
import json
import os
import shlex
import sys

from lightning.pytorch import Callback

from nemo_ext_tools.grpo_step_benchmark import REPO, _machine, kv_cache_equivalence, published_run


class PriorOnAndOff(Callback):
    """Before the first step: the KV-cache comparison with the attention prior as configured, then without it."""

    def __init__(self):
        self.checks: dict[str, dict] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.checks:
            return
        parameters = pl_module.inference_parameters
        configured = parameters.apply_attention_prior
        for prior in (configured, not configured):
            parameters.apply_attention_prior = prior
            self.checks[f"attention prior {'on' if prior else 'off'}"] = kv_cache_equivalence(pl_module, batch)
        parameters.apply_attention_prior = configured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-decoder-steps", type=int, default=32)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "kv_cache_divergence.md"))
    args = parser.parse_args()
    checks = PriorOnAndOff()
    with published_run(1, args.max_decoder_steps, "cpu", [checks]) as (cfg, _):
        pass
    command = "python scripts/kv_cache_divergence.py " + shlex.join(sys.argv[1:])
    text = (
        "# KV-cache rollouts against NeMo's uncached ones, with and without the attention prior\n\n"
        f"`{command.strip()}` on {_machine('cpu')}; MagpieTTS of the published magpietts.yaml (random weights), "
        f"{args.max_decoder_steps} frames, {cfg.data.batch_size} texts x {cfg.model.n_generations_per_item} "
        "rollouts, same seed and weights for each pair.\n\n"
        "| inference prior | decoding | rollouts | differing | first differing frame |\n|---|---|---:|---:|---|\n"
    )
    for setting, check in checks.checks.items():
        for decoding, found in check.items():
            text += (
                f"| {setting} | {decoding} | {found['rollouts']} | {found['differing']} | "
                f"{found['first_differing_frames']} |\n"
            )
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"command": command, "checks": checks.checks}, f, indent=1)
    print(text)


if __name__ == "__main__":
    main()
