"""Per-phase figures over a run's logged steps (median seconds, share of step time, highest CUDA peak) for the
console summary, the picture and the GPU report, and the reduction of a step's figures across ranks."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PhaseFigures:
    phase: str
    median_s: float  # over the steps
    share: float  # of the steps' time
    peak_gb: float | None  # highest CUDA peak (None without a CUDA device)


def phase_figures(history: list[dict[str, float]], phases: tuple[str, ...]) -> list[PhaseFigures]:
    """Each phase over logged steps (rows of reduced figures, as logged): median seconds, share, highest peak."""
    total = sum(row["time/step_s"] for row in history) or math.nan
    figures = []
    for phase in phases:
        seconds = [row.get(f"time/{phase}_s", 0.0) for row in history]
        peaks = [row.get(f"gpu/{phase}_peak_allocated_gb", math.nan) for row in history]
        peaks = [peak for peak in peaks if not math.isnan(peak)]
        figures.append(
            PhaseFigures(phase, statistics.median(seconds), sum(seconds) / total, max(peaks) if peaks else None)
        )
    return figures


def steady_state(history: list[dict[str, float]], warmup_steps: int) -> list[dict[str, float]]:
    """The logged steps after the first `warmup_steps` (one-time costs: first calls, allocations, librosa's first
    resample); all of them when there are no more than that."""
    return history[warmup_steps:] if len(history) > warmup_steps else history


def phase_summary_lines(history: list[dict[str, float]], phases: tuple[str, ...], warmup_steps: int = 0) -> list[str]:
    """A heading, then one line per phase: median seconds over the steady-state steps, share of their time, highest
    CUDA peak. Warm-up steps are left out and said so (the rank files keep them)."""
    if not history:
        return []
    measured = steady_state(history, warmup_steps)
    left_out = len(history) - len(measured)
    steps = [int(row["step"]) for row in measured]
    heading = f"Step anatomy over steps {steps[0]}-{steps[-1]} ({len(measured)} logged)"
    if left_out:
        warm = sum(row["time/step_s"] for row in history[:left_out])
        heading += f"; left out: {left_out} warm-up step{'s' if left_out > 1 else ''} ({warm:.3g} s, in the rank files)"
    return [heading] + [
        f"Step anatomy: {f.phase:<20} median {f.median_s:.4g} s, {f.share:6.1%} of step time"
        + (f", peak {f.peak_gb:.4g} GB" if f.peak_gb is not None else "")
        for f in phase_figures(measured, phases)
    ]


def reduce_across_ranks(trainer, figures: dict[str, float]) -> dict[str, float]:
    """max (under the figure's own name), min and mean over the ranks that measured it.

    Ranks may lack a figure (NaN is sent for it); the key set must be the same on every rank, which holds
    because all ranks run the same code on the same kind of device."""
    keys = sorted(figures)
    local = torch.tensor([figures[k] for k in keys], dtype=torch.float64, device=trainer.strategy.root_device)
    gathered = trainer.strategy.all_gather(local).reshape(-1, len(keys)).cpu()
    reduced = {}
    for column, key in enumerate(keys):
        values = [v for v in gathered[:, column].tolist() if not math.isnan(v)]
        if values:
            reduced[key] = max(values)
            reduced[f"{key}_min"] = min(values)
            reduced[f"{key}_mean"] = sum(values) / len(values)
    return reduced
