"""The step-anatomy picture: seconds per phase per logged step (stacked bars), and each phase's CUDA peak."""

from __future__ import annotations

import math

MOST_STEP_LABELS = 12  # past this, labels of consecutive steps run together ("1011121314...")


def step_ticks(steps: list[int]) -> list[int]:
    """The steps labelled on the x axis: every step up to MOST_STEP_LABELS, else every k-th (k a round number) and
    the last."""
    if len(steps) <= MOST_STEP_LABELS:
        return list(steps)
    span = steps[-1] - steps[0]
    stride = next(k for k in (2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000) if span / k <= MOST_STEP_LABELS - 1)
    ticks = [step for step in steps if step % stride == 0]
    return ticks if ticks[-1] == steps[-1] else ticks + [steps[-1]]


def draw_step_anatomy(history: list[dict[str, float]], phases: tuple[str, ...], path: str, ranks: str) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display on a compute node
    import matplotlib.pyplot as plt

    steps = [int(row["step"]) for row in history]
    figure, (times, memory) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [3, 2]})
    bottom = [0.0] * len(history)
    colors = plt.get_cmap("tab20").colors
    for index, phase in enumerate(phases):
        seconds = [row.get(f"time/{phase}_s", 0.0) for row in history]
        times.bar(steps, seconds, bottom=bottom, label=phase, color=colors[index % len(colors)])
        bottom = [b + s for b, s in zip(bottom, seconds)]
    times.set_xticks(step_ticks(steps))
    times.set_xlabel("step")
    times.set_ylabel("seconds")
    times.set_title(f"Time per phase ({ranks}, max over ranks)")
    times.legend(fontsize="small", ncol=2)

    from nemo_ext.telemetry.figures import phase_figures

    peaks = {f.phase: f.peak_gb for f in phase_figures(history, phases) if f.peak_gb is not None}
    if peaks:
        memory.barh(list(peaks), list(peaks.values()), color=[colors[phases.index(p) % len(colors)] for p in peaks])
        memory.set_xlabel("GB")
        memory.set_title("CUDA peak allocated per phase (highest step)")
        memory.invert_yaxis()
    else:
        rss = max(row.get("cpu/peak_rss_gb", math.nan) for row in history)
        memory.axis("off")
        memory.text(0.5, 0.5, f"No CUDA device: no per-phase GPU peaks.\nCPU peak RSS {rss:.3g} GB", ha="center")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
