"""Learning curves of the embedded tiny default: GRPO of MagpieTTS and of EasyMagpieTTS (mean reward per step),
and DPO on the tiny pairs (implicit-reward accuracy and margin), 3 seeds each, figures read back from the offline
W&B runs. Writes benchmarks/learning.md and benchmarks/learning.png.

    python scripts/benchmark_learning.py [--steps 40] [--dpo-steps 30] [--seeds 1,2,3,1234] [--tiny-root .tiny]
    python scripts/benchmark_learning.py --stochastic [--variant-seeds 1,2,3]   (only the stochastic-fixture section)

With the learning test's controls: the MagpieTTS run with NeMo's advantages negated, and zeroed."""

from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, REPO)

from nemo_ext_tools.learning_benchmark import (  # noqa: E402
    Experiment,
    draw,
    draw_variants,
    run_experiment,
    stochastic_rows,
    summary_rows,
    variant_rows,
    window_means,
)

GRPO = [
    Experiment("MagpieTTS GRPO (online_po_tiny)", "online_po", extra_series=("learning/reward_ssim_mean",)),
    Experiment(
        "EasyMagpieTTS GRPO (easy_online_po_tiny)", "easy_online_po", extra_series=("learning/rollout_frames_mean",)
    ),
]
DPO = Experiment(
    "DPO (offline_po_dpo_tiny)",
    "offline_po_dpo",
    metric="learning/dpo_reward_accuracy",
    extra_series=("learning/dpo_reward_margin",),
)
FIGURES = {DPO.label: ("learning/dpo_reward_accuracy", "learning/dpo_reward_margin")}
# GRPO beyond NeMo (docs/configuration.md, "GRPO beyond NeMo"): the same tiny MagpieTTS run with each change, 40
# optimizer steps.
VARIANTS = [
    Experiment("mu=1, grpo (NeMo's update)", "online_po"),
    Experiment("mu=2, grpo", "online_po", ("model.num_iterations=2",)),
    Experiment(
        "mu=4, grpo",
        "online_po",
        ("model.num_iterations=4", "exp_manager.checkpoint_callback_params.every_n_train_steps=20"),
    ),
    Experiment("mu=1, dapo", "online_po", ("model.loss_type=dapo",)),
    Experiment("mu=1, grpo, zero-std groups skipped", "online_po", ("model.skip_zero_std_groups=true",)),
]
# The stochastic fixture: the tiny default at the published randomness (dropout 0.1 in the encoder, the context
# encoder and the decoder; the context dropped for 10% of the batches), where the compared distributions part.
PUBLISHED_RANDOMNESS = (
    "+model.encoder.p_dropout=0.1",
    "+model.context_encoder.p_dropout=0.1",
    "+model.decoder.p_dropout=0.1",
    "+model.cfg_unconditional_prob=0.1",
)
MU2 = ("model.num_iterations=2",)
NO_DROPOUT = ("model.disable_dropout=true",)
SAMPLING = ("model.logprob_temperature=sampling",)
CORRECTION = ("model.importance_sampling_correction=true",)  # cap: the default, 2.0
MISMATCH = ("sampling/sampling_logp_difference/mean", "sampling/importance_sampling_ratio/mean", "learning/kl")
STOCHASTIC_GRPO = [
    Experiment(label, "online_po", (*PUBLISHED_RANDOMNESS, *extra), extra_series=MISMATCH)
    for label, extra in (
        ("mu=1, dropout on", ()),
        ("mu=1, dropout off", NO_DROPOUT),
        ("mu=2, dropout on", MU2),
        ("mu=2, dropout off", (*MU2, *NO_DROPOUT)),
        ("mu=1, dropout on, logprob_temperature=sampling", SAMPLING),
        ("mu=1, dropout off, logprob_temperature=sampling", (*NO_DROPOUT, *SAMPLING)),
        ("mu=2, dropout on, logprob_temperature=sampling", (*MU2, *SAMPLING)),
        ("mu=1, dropout on, importance_sampling_correction", CORRECTION),
        ("mu=1, dropout on, logprob_temperature=sampling, importance_sampling_correction", (*SAMPLING, *CORRECTION)),
    )
]
STOCHASTIC_DPO = [
    Experiment(
        label,
        "offline_po_dpo",
        (*PUBLISHED_RANDOMNESS, *extra),
        metric="learning/dpo_reward_accuracy",
        extra_series=("learning/dpo_reward_margin",),
    )
    for label, extra in (("DPO, dropout on", ()), ("DPO, dropout off", NO_DROPOUT))
]
STOCHASTIC_MARKER = "## The stochastic fixture"

# The learning test's controls (tests/test_learning.py): what a broken advantage does to the same runs.
CONTROLS = [
    Experiment("control: MagpieTTS GRPO, advantage sign flipped", "online_po", advantages="flip"),
    Experiment("control: MagpieTTS GRPO, every advantage 0", "online_po", advantages="zero"),
]


def main() -> None:
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--dpo-steps", type=int, default=30)
    parser.add_argument("--seeds", default="1,2,3,1234", help="1234 is the tiny default's own seed")
    parser.add_argument("--variant-seeds", default="1,2,3", help="seeds of the GRPO variants")
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--tiny-root", default=os.path.join(REPO, ".tiny"))
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks"))
    parser.add_argument("--stochastic", action="store_true", help="only the stochastic-fixture section")
    args = parser.parse_args()
    from nemo_ext_tools.tiny_fixtures import build_tiny_fixtures

    tiny = build_tiny_fixtures(args.tiny_root)
    if args.stochastic:
        stochastic_section(args, tiny.root)
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.time()
    curves = [run_experiment(e, seed, args.steps, tiny.root) for e in GRPO + CONTROLS for seed in seeds]
    curves += [run_experiment(DPO, seed, args.dpo_steps, tiny.root) for seed in seeds]
    variant_seeds = [int(s) for s in args.variant_seeds.split(",")]
    variants = [run_experiment(e, seed, args.steps, tiny.root) for e in VARIANTS for seed in variant_seeds]
    minutes = (time.time() - started) / 60
    shown = [c for c in curves if c.experiment not in CONTROLS]
    picture = draw(shown, os.path.join(args.out, "learning.png"), metrics=FIGURES)
    variants_picture = draw_variants(variants, os.path.join(args.out, "learning_grpo_variants.png"))
    lines = [
        "# Learning curves of the tiny default",
        "",
        f"`python scripts/benchmark_learning.py --steps {args.steps} --dpo-steps {args.dpo_steps} "
        f"--seeds {args.seeds}` ({minutes:.1f} minutes on {os.cpu_count()} CPU cores). Each run is the stage's "
        "tiny config as shipped "
        "(`conf/*_tiny.yaml`, fixtures from `scripts/make_tiny_fixtures.py`) with `seed=` and `trainer.max_steps=` "
        "set; the figures are read back from its offline W&B run.",
        "",
        f"First / last: the mean of the first and last {args.window} steps, averaged over the seeds. Rise: last minus "
        "first, mean ± standard deviation over the seeds, then each seed's.",
        "",
        "| run | figure | first | last | rise | per seed |",
        "|---|---|---|---|---|---|",
        *summary_rows(curves, args.window, FIGURES),
        "",
        f"![learning curves]({os.path.basename(picture)})",
        "",
        "## GRPO beyond NeMo: updates per rollout batch, DAPO's loss, skipped groups",
        "",
        f"The MagpieTTS tiny default for {args.steps} optimizer steps with one change each, seeds "
        f"{args.variant_seeds}. A rollout batch serves `num_iterations` (mu) optimizer steps, so mu=4 generates a "
        "quarter of the rollouts. Rollout seconds: the generation and reward phases (`time/*_s`), summed over the "
        "run; step seconds: whole steps. First / last: the mean reward of the first and last quarter of the rollout "
        "batches.",
        "",
        "| run | rollout batches | rollout seconds | step seconds | first | last | rise | per seed |",
        "|---|---|---|---|---|---|---|---|",
        *variant_rows(variants),
        "",
        f"![reward against optimizer steps and rollout seconds]({os.path.basename(variants_picture)})",
        "",
    ]
    path = os.path.join(args.out, "learning.md")
    notes_marker = STOCHASTIC_MARKER if STOCHASTIC_MARKER in _read(path) else "## Reading the curves"
    notes = ""
    if os.path.isfile(path) and notes_marker in open(path).read():
        notes = notes_marker + open(path).read().split(notes_marker, 1)[1]
    with open(path, "w") as f:
        f.write("\n".join(lines) + ("\n" + notes if notes else ""))
    print("\n".join(lines))
    for curve in curves:
        first, last = window_means(curve.values(), args.window)
        print(f"{curve.experiment.label} seed {curve.seed}: {first:.3f} -> {last:.3f}")


def _read(path: str) -> str:
    return open(path).read() if os.path.isfile(path) else ""


def stochastic_section(args, tiny_root: str) -> None:
    """The stochastic fixture's section of learning.md, written in place (the rest of the file is kept)."""
    seeds = [int(s) for s in args.variant_seeds.split(",")]
    started = time.time()
    grpo = [run_experiment(e, seed, args.steps, tiny_root) for e in STOCHASTIC_GRPO for seed in seeds]
    dpo = [run_experiment(e, seed, args.dpo_steps, tiny_root) for e in STOCHASTIC_DPO for seed in seeds]
    minutes = (time.time() - started) / 60
    lines = [
        STOCHASTIC_MARKER + ": dropout, temperature matching, updates per rollout batch",
        "",
        f"`python scripts/benchmark_learning.py --stochastic --steps {args.steps} --dpo-steps {args.dpo_steps} "
        f"--variant-seeds {args.variant_seeds}` ({minutes:.1f} minutes on {os.cpu_count()} CPU cores). The tiny "
        "default at the published randomness (`" + " ".join(PUBLISHED_RANDOMNESS) + "`), each change alone, seeds "
        f"{args.variant_seeds}, {args.steps} optimizer steps (DPO {args.dpo_steps}). Dropout off: "
        "`model.disable_dropout=true` (the context drop stays). First / last: the mean of the run's figure over the "
        "first and last quarter of its logged steps (a rollout batch under mu=2). The sampling figures compare each "
        "sampled code's log-prob under the rollout's distribution with the teacher-forced policy's at the start of "
        "the update (docs/telemetry.md), averaged over every logged step.",
        "",
        "| GRPO run | rollout batches | first reward | last reward | rise | per seed | "
        "`sampling_logp_difference/mean` | `importance_sampling_ratio/mean` | `learning/kl` |",
        "|---|---|---|---|---|---|---|---|---|",
        *stochastic_rows(grpo, MISMATCH),
        "",
        "| DPO run | steps | first accuracy | last accuracy | rise | per seed | `learning/dpo_reward_margin` |",
        "|---|---|---|---|---|---|---|",
        *stochastic_rows(dpo, ("learning/dpo_reward_margin",)),
        "",
    ]
    path = os.path.join(args.out, "learning.md")
    text = _read(path)
    notes_marker = "## Reading the curves"
    before, _, rest = text.partition(STOCHASTIC_MARKER)
    if not rest:
        before, _, rest = text.partition(notes_marker)
        rest = notes_marker + rest if rest else ""
    else:
        # The hand-written reading of the last run's tables ("Read (...") stays, to be checked against the new ones.
        reading = rest.split(notes_marker, 1)[0]
        kept = reading[reading.index("\nRead (") + 1 :] if "\nRead (" in reading else ""
        rest = notes_marker + rest.split(notes_marker, 1)[1] if notes_marker in rest else ""
        rest = kept.rstrip("\n") + "\n\n" + rest if kept else rest
    with open(path, "w") as f:
        f.write(before.rstrip("\n") + "\n\n" + "\n".join(lines) + ("\n" + rest if rest else ""))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
