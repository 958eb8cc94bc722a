"""How long a user waits for a verdict on a config: a config error, and a clean `dry_run=true`, timed side by side
for the code before the typed settings (a git worktree of --baseline) and this checkout, alternating, in one run.

    python scripts/benchmark_config_check.py [--baseline 1fd7b32] [--repeats 5] [--out benchmarks/config_check.md]

Each measurement is a fresh `python recipes/online_po.py --config-name online_po_tiny ...` process (what a user and
the SLURM launcher run), wall-clock from start to exit. Each side uses tiny fixtures built by its own code."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

# (label, overrides, what both sides should answer). The values ours refuses that the baseline let through are timed
# on ours only (the baseline's answer is a dry run that passes).
CASES = [
    ("config error (+whisper.dtype=int3)", ["+whisper.dtype=int3"], 2),
    ("clean dry run", [], 0),
]
OURS_ONLY = [
    ("config error (trainer.max_steps=abc)", ["trainer.max_steps=abc"]),
    ("config error (model.n_generations_per_item=1)", ["model.n_generations_per_item=1"]),
    ("config error (+telemetry.foo=1)", ["+telemetry.foo=1"]),
]


def timed(checkout: str, tiny: str, overrides: list[str]) -> tuple[float, int, str]:
    env = {**os.environ, "PYTHONPATH": checkout, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    command = [sys.executable, os.path.join(checkout, "recipes", "online_po.py"), "--config-name", "online_po_tiny"]
    command += [f"tiny_root={tiny}", "dry_run=true", *overrides]
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    last = (result.stderr.strip() or result.stdout.strip()).splitlines()
    return seconds, result.returncode, last[-1] if last else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default="1fd7b32", help="the commit before the typed settings")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(REPO, "benchmarks", "config_check.md"))
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="config_check_")
    baseline = os.path.join(work, "baseline")
    subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", baseline, args.baseline], check=True)
    try:
        sides = {}
        for label, checkout in (("before", baseline), ("now", REPO)):
            tiny = os.path.join(work, f"tiny_{label}")
            env = {**os.environ, "PYTHONPATH": checkout, "HF_HUB_OFFLINE": "1"}
            subprocess.run(
                [sys.executable, os.path.join(checkout, "scripts", "make_tiny_fixtures.py"), "--out", tiny],
                check=True,
                env=env,
                capture_output=True,
            )
            sides[label] = (checkout, tiny)
        times = {(label, case): [] for label in sides for case, _, _ in CASES}
        times.update({("now", case): [] for case, _ in OURS_ONLY})
        answers = {}
        for _ in range(args.repeats):
            for case, overrides, expected in CASES:
                for label, (checkout, tiny) in sides.items():  # alternating: both sides see the same machine load
                    seconds, code, last = timed(checkout, tiny, overrides)
                    if code != expected:
                        raise SystemExit(f"{label} {case}: exit {code}, expected {expected}: {last}")
                    times[(label, case)].append(seconds)
                    answers[(label, case)] = last
            for case, overrides in OURS_ONLY:
                checkout, tiny = sides["now"]
                seconds, code, last = timed(checkout, tiny, overrides)
                if code != 2:
                    raise SystemExit(f"now {case}: exit {code}, expected 2: {last}")
                times[("now", case)].append(seconds)
                answers[("now", case)] = last
            for case, overrides in OURS_ONLY:  # what the baseline answered for the same values
                checkout, tiny = sides["before"]
                _, code, last = timed(checkout, tiny, overrides)
                answers[("before", case)] = f"exit {code}: {last}"
    finally:
        subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", baseline], check=False)

    def median(label, case):
        values = times.get((label, case))
        return f"{statistics.median(values):.2f}" if values else "-"

    lines = [
        "# Config check: time to a verdict",
        "",
        f"`python scripts/benchmark_config_check.py --baseline {args.baseline} --repeats {args.repeats}`: a fresh",
        "`python recipes/online_po.py --config-name online_po_tiny dry_run=true ...` per measurement, wall seconds",
        f"(median of {args.repeats}), the two checkouts alternating in one run on this machine "
        f"({os.cpu_count()} CPU cores).",
        "",
        f"| case | before (`{args.baseline}`) | now |",
        "|---|---|---|",
    ]
    for case, _, _ in CASES:
        lines.append(f"| {case} | {median('before', case)} | {median('now', case)} |")
    for case, _ in OURS_ONLY:
        lines.append(f"| {case} | accepted (a dry run that passes) | {median('now', case)} |")
    lines += ["", "Answers (the last line each printed):", ""]
    for (label, case), last in sorted(answers.items()):
        lines.append(f"- {label}, {case}: `{last}`")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
