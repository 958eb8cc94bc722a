"""What the step anatomy costs: a tiny GRPO run on the CPU with telemetry on, measured two ways in one run.

1. Accounted: the wall time spent inside the anatomy itself (every phase begin/end, start/end of step) and inside
   the telemetry callback's per-step work (figures, the cross-rank reduction, the logger call), summed per step,
   as a share of the step time.
2. Side by side: steps alternate between anatomy on and off in the same process (same model, same data order),
   and the median step times are compared (noisier: a tiny CPU step varies by several percent on its own).

python scripts/benchmark_telemetry_overhead.py [--steps 24] [--out benchmarks/telemetry_overhead.md]
Needs the tiny fixtures (python scripts/make_tiny_fixtures.py --out .tiny)."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

from nemo_ext_tools.tiny_grpo_benchmark import parse_arguments, run_tiny_grpo, write_report


def main() -> None:
    args = parse_arguments(__doc__, "telemetry_overhead.md")
    from lightning.pytorch import Callback

    from nemo_ext.telemetry import anatomy, callback

    accounted = {"seconds": 0.0}

    def charged(function):
        def timed(*a, **k):
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                accounted["seconds"] += time.perf_counter() - start

        return timed

    # Charge the instrumentation's own time (nested calls would be counted twice: these do not nest).
    for name in ("begin", "end", "start_step", "end_step"):
        setattr(anatomy.StepAnatomy, name, charged(getattr(anatomy.StepAnatomy, name)))
    monitor = callback.StepTelemetry
    for name in ("_end_step",):
        setattr(monitor, name, charged(getattr(monitor, name)))

    class Alternate(Callback):
        """Anatomy on for even steps, off for odd ones; records each step's wall time and its instrumentation."""

        def __init__(self):
            self.rows = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            # Runs after the telemetry callback's own hook (registered later): decide, then restart the step.
            pl_module.step_anatomy.enabled = trainer.global_step % 2 == 0
            pl_module.step_anatomy.start_step()
            accounted["seconds"] = 0.0
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            # Runs after the telemetry callback's _end_step, so its cost is included.
            self.rows.append((pl_module.step_anatomy.enabled, time.perf_counter() - self.start, accounted["seconds"]))

    probe = Alternate()
    run_tiny_grpo(args.tiny_root, args.steps, [probe])

    rows = probe.rows[2:]  # the first steps warm up (allocations, first calls)
    on = [row for row in rows if row[0]]
    off = [row for row in rows if not row[0]]
    step_on = statistics.median(row[1] for row in on)
    step_off = statistics.median(row[1] for row in off)
    share = sum(row[2] for row in on) / sum(row[1] for row in on)
    lines = [
        "# Telemetry overhead: the step anatomy on a tiny GRPO run (CPU)",
        "",
        f"`python scripts/benchmark_telemetry_overhead.py --steps {args.steps}`, {platform.processor() or 'cpu'}, "
        f"{os.cpu_count()} cores, torch threads {__import__('torch').get_num_threads()}, Python "
        f"{sys.version.split()[0]}. One run; steps alternate anatomy on / off; the first 2 steps are left out.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| steps measured (on / off) | {len(on)} / {len(off)} |",
        f"| instrumentation time inside steps with the anatomy on (accounted), share of their time | {share:.3%} |",
        f"| mean instrumentation time per step | {1000 * statistics.mean(row[2] for row in on):.2f} ms |",
        f"| median step, anatomy on | {step_on:.4f} s |",
        f"| median step, anatomy off | {step_off:.4f} s |",
        f"| median on / median off | {step_on / step_off:.3f} |",
        "",
        "The accounted share is the precise figure: the time spent in the anatomy's own calls (clock reads, the "
        "phase stack) and in the telemetry callback's per-step work (figures, cross-rank reduction, logging). "
        "The side-by-side medians include the run's own variation from step to step (different rollouts).",
    ]
    write_report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
