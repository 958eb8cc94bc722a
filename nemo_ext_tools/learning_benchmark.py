"""Learning curves of the tiny stages: each experiment (a stage and its overrides) runs for a few seeds in this
process, and its per-step figures are read back from the offline W&B run, as a user would see them."""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import tempfile
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Experiment:
    label: str
    stage: str  # nemo_ext.stages name
    overrides: tuple[str, ...] = ()
    metric: str = "learning/reward_mean"  # what "learning" means for it
    extra_series: tuple[str, ...] = ()
    # A control: NeMo's advantages changed on the way out of its reward step ("flip": sign; "zero": all 0).
    advantages: str | None = None


@dataclass
class Curve:
    experiment: Experiment
    seed: int
    series: dict[str, list[float]] = field(default_factory=dict)
    step_seconds: list[float] = field(default_factory=list)  # wall seconds of each step (telemetry's time/step_s)
    rollout_seconds: list[float] = field(default_factory=list)  # each step's generation + reward phases

    def values(self, metric: str | None = None) -> list[float]:
        return self.series[metric or self.experiment.metric]


@contextlib.contextmanager
def advantages_changed(change: str | None):
    """While active, MagpieTTS GRPO's reward step (nemo_ext/models/grpo_step.py) returns its advantages negated
    ("flip") or zeroed ("zero")."""
    if change is None:
        yield
        return
    from nemo_ext.models.grpo_step import GRPOStep

    original = GRPOStep.generate_and_reward

    def changed(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        output["advantages"] = -output["advantages"] if change == "flip" else output["advantages"] * 0
        return output

    GRPOStep.generate_and_reward = changed
    try:
        yield
    finally:
        GRPOStep.generate_and_reward = original


ROLLOUT_PHASES = ("generation", "codec_decode", "audio_io", "asr", "speaker_verification", "reward")


def run_experiment(experiment: Experiment, seed: int, steps: int, tiny_root: str) -> Curve:
    from hydra import compose, initialize_config_dir

    from nemo_ext.stages import STAGES
    from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

    conf = os.path.join(os.path.dirname(__file__), "..", "conf")
    with tempfile.TemporaryDirectory() as work:
        overrides = [
            f"tiny_root={tiny_root}",
            f"exp_manager.exp_dir={work}",
            f"seed={seed}",
            f"trainer.max_steps={steps}",
            *experiment.overrides,
        ]
        if experiment.stage == "offline_po_dpo":
            overrides.append("trainer.max_epochs=null")
        with initialize_config_dir(config_dir=os.path.abspath(conf), version_base="1.3"):
            cfg = compose(f"{experiment.stage}_tiny", overrides)
        with advantages_changed(experiment.advantages):
            STAGES[experiment.stage].run(cfg)
        [run_file] = find_offline_runs(work)
        run = read_offline_run(run_file)
    curve = Curve(experiment, seed)
    for key in (experiment.metric, *experiment.extra_series):
        curve.series[key] = run.series(key)
    rows = [row for row in run.history if "time/step_s" in row]
    curve.step_seconds = [row["time/step_s"] for row in rows]
    curve.rollout_seconds = [sum(row.get(f"time/{phase}_s", 0.0) for phase in ROLLOUT_PHASES) for row in rows]
    return curve


def window_means(values: list[float], window: int) -> tuple[float, float]:
    return statistics.mean(values[:window]), statistics.mean(values[-window:])


def summary_rows(curves: list[Curve], window: int, metrics: dict[str, tuple[str, ...]] | None = None) -> list[str]:
    """One markdown row per experiment and figure: first and last window (mean over seeds), the rise per seed.
    `metrics`: label -> the figures to summarize (default: the experiment's own)."""
    rows = []
    for experiment in dict.fromkeys(c.experiment for c in curves):
        mine = [c for c in curves if c.experiment == experiment]
        for metric in (metrics or {}).get(experiment.label, (experiment.metric,)):
            firsts, lasts = zip(*(window_means(c.values(metric), window) for c in mine))
            rises = [last - first for first, last in zip(firsts, lasts)]
            spread = statistics.pstdev(rises) if len(rises) > 1 else math.nan
            first, last = statistics.mean(firsts), statistics.mean(lasts)
            rows.append(
                f"| {experiment.label} | `{metric}` | {first:.3f} | {last:.3f} "
                f"| {statistics.mean(rises):+.3f} ± {spread:.3f} | {', '.join(f'{r:+.3f}' for r in rises)} |"
            )
    return rows


def _pyplot():
    """matplotlib's pyplot on the file-only backend (no display on a login node or in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, figure, path: str) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def draw(curves: list[Curve], path: str, smooth: int = 5, metrics: dict[str, tuple[str, ...]] | None = None) -> str:
    plt = _pyplot()
    panels = [
        (experiment, metric)
        for experiment in dict.fromkeys(c.experiment for c in curves)
        for metric in (metrics or {}).get(experiment.label, (experiment.metric,))
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for axis, (experiment, metric) in zip(axes[0], panels):
        for curve in (c for c in curves if c.experiment == experiment):
            values = curve.values(metric)
            smoothed = [statistics.mean(values[max(0, i - smooth + 1) : i + 1]) for i in range(len(values))]
            line = axis.plot(range(1, len(values) + 1), smoothed, label=f"seed {curve.seed}")[0]
            axis.plot(range(1, len(values) + 1), values, alpha=0.25, color=line.get_color())
        axis.set_title(experiment.label, fontsize="medium")
        axis.set_xlabel("optimizer step")
        axis.set_ylabel(f"{metric} ({smooth}-step mean; raw faint)", fontsize="small")
        axis.legend(fontsize="small")
    return _save(plt, figure, path)


def optimizer_steps(curve: Curve) -> list[int]:
    """The optimizer step each logged row ends at (a rollout batch is num_iterations steps)."""
    iterations = next(
        (int(o.split("=")[1]) for o in curve.experiment.overrides if o.startswith("model.num_iterations=")), 1
    )
    return [iterations * (i + 1) for i in range(len(curve.values()))]


def cumulative(values: list[float]) -> list[float]:
    total, out = 0.0, []
    for value in values:
        total += value
        out.append(total)
    return out


def by_experiment_quarters(curves: list[Curve]):
    """Per experiment (seeds pooled, in order): its curves, and the mean of its own figure over the first and the
    last quarter of each curve's logged steps, and their differences (one per seed)."""
    for experiment in dict.fromkeys(c.experiment for c in curves):
        mine = [c for c in curves if c.experiment == experiment]
        window = max(len(mine[0].values()) // 4, 1)
        firsts, lasts = zip(*(window_means(c.values(), window) for c in mine))
        yield experiment, mine, firsts, lasts, [last - first for first, last in zip(firsts, lasts)]


def variant_rows(curves: list[Curve]) -> list[str]:
    """Per experiment (seeds pooled): rollout batches, rollout seconds, and the mean reward of the first and last
    quarter of its rollout batches, with the rise per seed."""
    rows = []
    for experiment, mine, firsts, lasts, rises in by_experiment_quarters(curves):
        seconds = statistics.mean(sum(c.rollout_seconds) for c in mine)
        step_seconds = statistics.mean(sum(c.step_seconds) for c in mine)
        rows.append(
            f"| {experiment.label} | {len(mine[0].values())} | {seconds:.1f} | {step_seconds:.1f} "
            f"| {statistics.mean(firsts):.3f} | {statistics.mean(lasts):.3f} | {statistics.mean(rises):+.3f} "
            f"| {', '.join(f'{r:+.3f}' for r in rises)} |"
        )
    return rows


def draw_variants(curves: list[Curve], path: str, smooth: int = 3) -> str:
    """Mean reward over the seeds against optimizer steps and against cumulative rollout seconds."""
    plt = _pyplot()
    figure, (by_step, by_seconds) = plt.subplots(1, 2, figsize=(12, 4.2))
    for experiment in dict.fromkeys(c.experiment for c in curves):
        mine = [c for c in curves if c.experiment == experiment]
        length = min(len(c.values()) for c in mine)
        mean = [statistics.mean(c.values()[i] for c in mine) for i in range(length)]
        smoothed = [statistics.mean(mean[max(0, i - smooth + 1) : i + 1]) for i in range(length)]
        steps = optimizer_steps(mine[0])[:length]
        seconds = [statistics.mean(cumulative(c.rollout_seconds)[i] for c in mine) for i in range(length)]
        by_step.plot(steps, smoothed, marker=".", label=experiment.label)
        by_seconds.plot(seconds, smoothed, marker=".", label=experiment.label)
    by_step.set_xlabel("optimizer step")
    by_seconds.set_xlabel("rollout seconds (generation + reward phases, cumulative)")
    for axis in (by_step, by_seconds):
        axis.set_ylabel(f"learning/reward_mean (mean over seeds, {smooth}-batch mean)", fontsize="small")
        axis.legend(fontsize="x-small")
    return _save(plt, figure, path)


def _series_mean(curves: list[Curve], metric: str) -> str:
    values = [v for c in curves for v in c.series.get(metric, [])]
    return f"{statistics.mean(values):.3f}" if values else "-"


def stochastic_rows(curves: list[Curve], extra: tuple[str, ...]) -> list[str]:
    """Per experiment (seeds pooled): the rise of its own figure between the first and last quarter of its logged
    steps (mean ± std over the seeds, then each seed's), and the mean of each `extra` figure over every logged step."""
    rows = []
    for experiment, mine, firsts, lasts, rises in by_experiment_quarters(curves):
        spread = statistics.pstdev(rises) if len(rises) > 1 else math.nan
        cells = " | ".join(_series_mean(mine, metric) for metric in extra)
        rows.append(
            f"| {experiment.label} | {len(mine[0].values())} | {statistics.mean(firsts):.3f} "
            f"| {statistics.mean(lasts):.3f} | {statistics.mean(rises):+.3f} ± {spread:.3f} "
            f"| {', '.join(f'{r:+.3f}' for r in rises)} | {cells} |"
        )
    return rows
