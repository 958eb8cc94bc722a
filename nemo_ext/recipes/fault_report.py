"""What the launcher says when a job step fails: which rank ended first, on which node, with which exit status or
signal (srun's own error lines), how each rank ended and which went quiet first and at which step (the ranks'
heartbeats: the rank that ended first is often one that timed out waiting for the quiet one), and the step the
attempt reached (the launcher's "same step failed twice" rule compares it between attempts).

    python -m nemo_ext.recipes.fault_report --run-folder DIR --since EPOCH --srun-log FILE

prints the report on stderr and the step reached on stdout: "set-up" when no rank had begun training (or no rank
beat at all) in this attempt; "finished" when all `--ranks` ranks of the attempt had finished their work before the
job step failed (a rank that ended badly while its interpreter shut down): the run is complete, there is nothing to
restart, and a restart would only be refused ("this one finished")."""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import signal
import sys
from dataclasses import dataclass

from nemo_ext.recipes.heartbeat import HEARTBEAT_DIR, stalled_after

# srun: error: node2: task 1: Killed / srun: error: gpu-07: tasks 8-15: Exited with exit code 1
_SRUN_TASK_ERROR = re.compile(r"srun: error: (?P<node>\S+): tasks? (?P<tasks>[\d,\-]+): (?P<what>.+?)\s*$")
# srun's words for the signals it reports (strsignal's)
_SIGNAL_WORDS = {"Killed": signal.SIGKILL, "Terminated": signal.SIGTERM, "Aborted": signal.SIGABRT}
_SIGNAL_WORDS.update({"Segmentation fault": signal.SIGSEGV, "Bus error": signal.SIGBUS})


@dataclass(frozen=True)
class TaskEnd:
    node: str
    tasks: str
    what: str

    def describe(self) -> str:
        number = _SIGNAL_WORDS.get(self.what)
        how = f"{self.what} (signal {int(number)}, {number.name})" if number is not None else self.what
        return f"{'ranks' if ('-' in self.tasks or ',' in self.tasks) else 'rank'} {self.tasks} on {self.node}: {how}"


def task_ends(srun_log: str) -> list[TaskEnd]:
    """srun's lines about tasks that ended badly, in its order (the first is the one that ended first)."""
    found = []
    for line in srun_log.splitlines():
        match = _SRUN_TASK_ERROR.search(line)
        if match:
            found.append(TaskEnd(match["node"], match["tasks"], match["what"]))
    return found


def heartbeats(run_folder: str, since: float) -> list[dict]:
    """The ranks' last heartbeats written at or after `since` (this attempt's), by rank."""
    beats = []
    for path in glob.glob(os.path.join(run_folder, HEARTBEAT_DIR, "rank*.json")):
        try:
            with open(path) as f:
                beat = json.load(f)
        except (OSError, ValueError):
            continue
        if beat.get("time", 0) >= since:
            beats.append(beat)
    return sorted(beats, key=lambda beat: beat["rank"])


def reached_step(beats: list[dict]) -> int | None:
    steps = [beat["step"] for beat in beats if beat.get("step") is not None]
    return max(steps) if steps else None


def every_rank_finished(beats: list[dict], ranks: int) -> bool:
    """Every one of `ranks` ranks wrote its last beat with the outcome "finished" in this attempt."""
    return ranks > 0 and sorted(beat["rank"] for beat in beats if beat.get("ended") == "finished") == list(range(ranks))


def report(beats: list[dict], srun_log: str, run_folder: str) -> list[str]:
    """The report's lines from this attempt's heartbeats (`heartbeats(run_folder, since)`) and srun's stderr."""
    lines = []
    ends = task_ends(srun_log)
    if ends:
        lines.append(f"[magpie] first to end: {ends[0].describe()}")
        lines.extend(f"[magpie] then: {end.describe()}" for end in ends[1:])
    if not beats:
        lines.append(f"[magpie] no rank wrote a heartbeat in this attempt ({run_folder}/{HEARTBEAT_DIR})")
        return lines
    newest = max(beat["time"] for beat in beats)
    went_quiet = []  # (since, where, step): the ranks that stopped beating while their process lived on
    for beat in beats:
        quiet = newest - beat["time"]
        where = f"rank {beat['rank']} on {beat['node']} (pid {beat['pid']})"
        at = "in set-up" if beat["step"] is None else f"at step {beat['step']}"
        stall, ended = beat.get("stall"), beat.get("ended")
        how_it_ended = f"; it ended: {ended}" if ended else ""
        if not ended and quiet > stalled_after(beat.get("every_s", 10.0)):
            went_quiet.append((beat["time"], where, at))
            lines.append(
                f"[magpie] {where} went quiet {quiet:.0f} s before the last heartbeat, {at}: "
                "it hung, was stopped, or died first"
            )
        elif stall:
            stalled_at = "in set-up" if stall["step"] is None else f"at step {stall['step']}"
            went_quiet.append((stall["since"], where, stalled_at))
            lines.append(
                f"[magpie] {where} went quiet for {stall['for_s']:.0f} s {stalled_at} (no heartbeat: "
                f"the process was stopped or frozen), then beat again until the end, {at}{how_it_ended}"
            )
        else:
            lines.append(f"[magpie] {where} beat until the end, {at}{how_it_ended}")
    if went_quiet:
        # The rank that went quiet first is where to look: the others then waited for it in a collective.
        _, where, at = min(went_quiet)
        lines.append(f"[magpie] the first to go quiet: {where}, {at}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-folder", required=True)
    parser.add_argument("--since", type=float, required=True, help="the attempt's start, seconds since the epoch")
    parser.add_argument("--srun-log", help="srun's stderr of the attempt")
    parser.add_argument("--ranks", type=int, default=0, help="the job step's number of ranks")
    args = parser.parse_args(argv)
    srun_log = ""
    if args.srun_log and os.path.isfile(args.srun_log):
        with open(args.srun_log, errors="replace") as f:
            srun_log = f.read()
    beats = heartbeats(args.run_folder, args.since)
    for line in report(beats, srun_log, args.run_folder):
        print(line, file=sys.stderr, flush=True)
    step = reached_step(beats)
    if every_rank_finished(beats, args.ranks):
        print(
            f"[magpie] all {args.ranks} ranks had finished the run{'' if step is None else f' (at step {step})'} "
            "before the job step failed: the work is complete and saved",
            file=sys.stderr,
            flush=True,
        )
        print("finished")
    else:
        print("set-up" if step is None else step)
    return 0


if __name__ == "__main__":
    sys.exit(main())
