"""The GRPO reward path with and without the wav round trip, side by side in one run.

Two tiny GRPO runs on the CPU (Whisper reward, NeMo ASR reward), each alternating step by step between NeMo's
way (each clip and its codes written to <log_dir>/audios and read back by the ASR and speaker models) and ours
(`rollout_audio_files: false`: clips encoded in memory). The step anatomy gives each step's audio I/O, ASR and
speaker-verification seconds. Identical rewards for the two paths are a test (tests/test_parity_nemo.py::
test_rollouts_in_memory_reach_the_reward_models_as_the_files_would); this measures time.

python scripts/benchmark_reward_path.py [--steps 24] [--out benchmarks/reward_path.md]
Needs the tiny fixtures (python scripts/make_tiny_fixtures.py --out .tiny)."""

from __future__ import annotations

import os
import platform
import statistics
import sys

from nemo_ext_tools.tiny_grpo_benchmark import parse_arguments, run_tiny_grpo, write_report

REWARD_PHASES = ("audio_io", "asr", "speaker_verification")
REWARD_ASR_MODELS = ("whisper", "nemo")


def measure(tiny_root: str, steps: int, reward_asr: str) -> list:
    """(in memory?, {phase: seconds}) per step of one tiny GRPO run alternating between the two paths."""
    from lightning.pytorch import Callback

    from nemo_ext.rollout_audio import InMemoryClips

    class Alternate(Callback):
        def __init__(self):
            self.rows = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.in_memory = trainer.global_step % 2 == 0
            pl_module._rollout_clips = InMemoryClips() if self.in_memory else None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seconds = pl_module.step_anatomy.current.seconds
            self.rows.append((self.in_memory, {phase: seconds.get(phase, 0.0) for phase in REWARD_PHASES}))

    probe = Alternate()
    run_tiny_grpo(tiny_root, steps, [probe], f"model.reward_asr_model={reward_asr}")
    return probe.rows[2:]  # warm-up steps left out


def main() -> None:
    args = parse_arguments(__doc__, "reward_path.md")
    table = [
        "# The GRPO reward path: wav files vs in memory (tiny GRPO, CPU)",
        "",
        f"`python scripts/benchmark_reward_path.py --steps {args.steps}`, {os.cpu_count()} cores, Python "
        f"{sys.version.split()[0]}, {platform.platform()}. One run per reward model, steps alternating between the "
        "two paths; the first 2 steps of each run left out. Each step: 2 texts x 2 generations of up to 24 frames "
        "(about 1 s of audio at 22.05 kHz). Seconds are medians over the steps of each path.",
    ]
    for reward_asr in REWARD_ASR_MODELS:
        rows = measure(args.tiny_root, args.steps, reward_asr)
        table += [
            "",
            f"## `model.reward_asr_model={reward_asr}`",
            "",
            "| phase | wav files (NeMo) | in memory (ours) |",
            "|---|---|---|",
        ]
        for phase in (*REWARD_PHASES, "total"):
            medians = {}
            for in_memory in (False, True):
                values = [
                    sum(figures.values()) if phase == "total" else figures[phase]
                    for memory, figures in rows
                    if memory == in_memory
                ]
                medians[in_memory] = statistics.median(values)
            table.append(f"| {phase} | {medians[False]:.4f} s | {medians[True]:.4f} s |")
        table += [
            "",
            f"Steps per path: {sum(1 for m, _ in rows if not m)} (files), {sum(1 for m, _ in rows if m)} (memory).",
        ]
    table += [
        "",
        "`audio_io` is writing clips and codes, plus reading them for the ASR model (Whisper: librosa's load and "
        "resampling; NeMo ASR in memory: the same decoding its file loader does, before `transcribe`). With the "
        "files, NeMo ASR's reading happens inside `transcribe` (its dataloader, with worker processes forked per "
        "call) and counts as `asr`. The speaker model reads its clips inside `speaker_verification`. On a cluster "
        "the files go to a shared filesystem, where each small file costs more than on this local disk.",
    ]
    write_report("\n".join(table) + "\n", args.out)


if __name__ == "__main__":
    main()
