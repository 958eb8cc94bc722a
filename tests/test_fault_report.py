"""The pieces the launcher uses when a job step fails, on their own: srun's task lines, the heartbeats of a run
folder (a real Heartbeat thread writing them), the collective timeout given to Lightning's DDP strategy. The
two-node tests (tests/test_slurm_two_nodes.py) run them together on real ranks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from nemo_ext.recipes.fault_report import heartbeats, reached_step, report, task_ends
from nemo_ext.recipes.heartbeat import Heartbeat, heartbeat_path, stalled_after
from nemo_ext.recipes.trainer import with_collective_timeout

SRUN_LOG = """\
Traceback (most recent call last):
RuntimeError: Connection reset by peer
srun: error: gpu-07: tasks 8-15: Exited with exit code 1
srun: launch/slurm: _step_signal: Terminating StepId=1.0
srun: error: gpu-02: task 3: Segmentation fault
srun: error: gpu-03: task 4: Killed
"""


def test_srun_task_lines_name_ranks_nodes_and_signals_in_order():
    ends = task_ends(SRUN_LOG)
    assert [end.describe() for end in ends] == [
        "ranks 8-15 on gpu-07: Exited with exit code 1",
        "rank 3 on gpu-02: Segmentation fault (signal 11, SIGSEGV)",
        "rank 4 on gpu-03: Killed (signal 9, SIGKILL)",
    ]


def write_beat(folder, rank, step, at, stall=None, node="node1", ended=None):
    path = heartbeat_path(str(folder), rank)
    (folder / "state" / "heartbeat").mkdir(parents=True, exist_ok=True)
    beat = {"rank": rank, "node": node, "pid": 100 + rank, "step": step, "time": at, "every_s": 1.0, "stall": stall}
    beat["ended"] = ended
    with open(path, "w") as f:
        json.dump(beat, f)


def fault_report(folder, since, ranks=None):
    """The launcher's call: `python -m nemo_ext.recipes.fault_report` (with `--ranks` when given)."""
    command = [sys.executable, "-m", "nemo_ext.recipes.fault_report", "--run-folder", str(folder)]
    command += ["--since", str(since)] + ([] if ranks is None else ["--ranks", str(ranks)])
    return subprocess.run(command, capture_output=True, text=True, check=True)


def test_the_report_tells_a_quiet_rank_a_stalled_one_and_one_that_beat_to_the_end(tmp_path):
    now = time.time()
    write_beat(tmp_path, 0, 7, now)
    write_beat(tmp_path, 1, 5, now - 30, node="node2")
    write_beat(tmp_path, 2, 7, now - 0.5, stall={"for_s": 14.2, "step": 6, "since": now - 20})
    beats = heartbeats(str(tmp_path), since=now - 60)
    lines = report(beats, "srun: error: node1: task 0: Exited with exit code 1", str(tmp_path))
    assert lines == [
        "[magpie] first to end: rank 0 on node1: Exited with exit code 1",
        "[magpie] rank 0 on node1 (pid 100) beat until the end, at step 7",
        "[magpie] rank 1 on node2 (pid 101) went quiet 30 s before the last heartbeat, at step 5: it hung, was "
        "stopped, or died first",
        "[magpie] rank 2 on node1 (pid 102) went quiet for 14 s at step 6 (no heartbeat: the process was stopped or "
        "frozen), then beat again until the end, at step 7",
        "[magpie] the first to go quiet: rank 1 on node2 (pid 101), at step 5",
    ]
    assert reached_step(beats) == 7
    # Beats older than the attempt are another attempt's: not reported, and the step is "set-up".
    assert heartbeats(str(tmp_path), since=now + 1) == []
    shown = fault_report(tmp_path, now + 1)
    assert shown.stdout == "set-up\n" and "no rank wrote a heartbeat in this attempt" in shown.stderr


def test_a_rank_that_ended_is_not_taken_for_a_quiet_one_and_the_first_stall_is_named(tmp_path):
    """What CI saw with a stopped rank on a loaded machine: the waiting rank timed out and ended first; srun then
    continued the stopped rank (SIGCONT, SIGTERM), which beat on for seconds. The rank that ended is not "quiet"; the
    stopped one is named as the first to go quiet."""
    now = time.time()
    timed_out = "failed: DistBackendError: [../third_party/gloo/gloo/transport/tcp/pair.cc:534] Timed out"
    write_beat(tmp_path, 0, 3, now - 4, ended=timed_out)
    write_beat(
        tmp_path,
        1,
        3,
        now,
        stall={"for_s": 15.2, "step": 3, "since": now - 19},
        node="node2",
        ended="stopped by SIGTERM",
    )
    srun_log = (
        "srun: error: node1: task 0: Exited with exit code 1\nsrun: error: node2: task 1: Exited with exit code 1"
    )
    assert report(heartbeats(str(tmp_path), since=now - 60), srun_log, str(tmp_path)) == [
        "[magpie] first to end: rank 0 on node1: Exited with exit code 1",
        "[magpie] then: rank 1 on node2: Exited with exit code 1",
        f"[magpie] rank 0 on node1 (pid 100) beat until the end, at step 3; it ended: {timed_out}",
        "[magpie] rank 1 on node2 (pid 101) went quiet for 15 s at step 3 (no heartbeat: the process was stopped or "
        "frozen), then beat again until the end, at step 3; it ended: stopped by SIGTERM",
        "[magpie] the first to go quiet: rank 1 on node2 (pid 101), at step 3",
    ]


def test_the_last_beat_says_how_the_rank_ended(tmp_path):
    with Heartbeat(str(tmp_path), 0, every_s=0.1, step_of=lambda: 1):
        pass
    assert json.loads(open(heartbeat_path(str(tmp_path), 0)).read())["ended"] == "finished"
    with pytest.raises(RuntimeError):
        with Heartbeat(str(tmp_path), 1, every_s=0.1, step_of=lambda: 1):
            raise RuntimeError("Timed out waiting 10000ms for recv operation\nmore lines")
    ended = json.loads(open(heartbeat_path(str(tmp_path), 1)).read())["ended"]
    assert ended == "failed: RuntimeError: Timed out waiting 10000ms for recv operation"


def test_a_job_step_that_failed_after_every_rank_finished_is_reported_as_finished(tmp_path):
    """Every rank wrote "finished" and one still ended badly (on its way out): the launcher is told "finished",
    not a step to restart from. One rank short of the job's, or one that failed, is a step as before."""
    now = time.time()
    write_beat(tmp_path, 0, 2, now, ended="finished")
    write_beat(tmp_path, 1, 2, now, ended="failed: RuntimeError: Connection closed by peer")
    shown = fault_report(tmp_path, now - 60, ranks=2)
    assert shown.stdout == "2\n" and "had finished the run" not in shown.stderr
    write_beat(tmp_path, 1, 2, now, ended="finished")
    shown = fault_report(tmp_path, now - 60, ranks=2)
    assert shown.stdout == "finished\n"
    assert "[magpie] all 2 ranks had finished the run (at step 2) before the job step failed" in shown.stderr
    assert fault_report(tmp_path, now - 60, ranks=3).stdout == "2\n"  # rank 2 never said it finished
    # Last attempt's "finished" beats are not this attempt's.
    assert fault_report(tmp_path, now + 1, ranks=2).stdout == "set-up\n"


def test_a_busy_process_that_holds_the_interpreter_lock_is_no_stall(tmp_path):
    """A long call that holds the lock (a big pickle, a C loop) or a loaded CPU delays the beats too, but the process
    used CPU time meanwhile: only a stopped or frozen process records a stall."""
    long_enough = 1.5 * stalled_after(0.1)
    # One call holds the lock; on a loaded machine a call can take less than planned, so the child doubles its
    # length until one call held the lock longer than a stall takes (no wall-clock guess to miss).
    script = (
        "import sys, time; from nemo_ext.recipes.heartbeat import Heartbeat\n"
        "h = Heartbeat(sys.argv[1], 0, 0.1, lambda: 1); h.training = True; h.__enter__(); time.sleep(0.3)\n"
        "n, held = 10**7, 0.0\n"
        "while held <= float(sys.argv[2]):\n"
        "    start = time.monotonic(); sum(range(n)); held = time.monotonic() - start; n *= 2\n"
        "time.sleep(0.3); h.end('finished'); print(held)"
    )
    command = [sys.executable, "-c", script, str(tmp_path), str(long_enough)]
    run = subprocess.run(command, capture_output=True, text=True, check=True, timeout=300)
    assert float(run.stdout) > long_enough  # the thread could not beat for that long
    beat = json.loads(open(heartbeat_path(str(tmp_path), 0)).read())
    assert (beat["stall"], beat["ended"]) == (None, "finished")


def test_a_heartbeat_carries_the_step_once_training_began_and_records_a_stall(tmp_path):
    steps = iter(range(100))
    beat = Heartbeat(str(tmp_path), 3, every_s=0.1, step_of=lambda: next(steps))
    with beat:
        first = json.loads(open(beat.path).read())
        assert (first["rank"], first["step"], first["stall"]) == (3, None, None)  # in set-up: no step yet
        beat.training = True
        time.sleep(0.35)
        # A stall as a stopped process sees it: its thread cannot beat for longer than two beats and a second.
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from nemo_ext.recipes.heartbeat import Heartbeat\n"
                "h = Heartbeat(sys.argv[1], 5, 0.1, lambda: 42); h.training = True; h.__enter__(); time.sleep(60)",
                str(tmp_path),
            ]
        )
        try:
            path = heartbeat_path(str(tmp_path), 5)
            deadline = time.monotonic() + 60
            while not (os.path.exists(path) and json.loads(open(path).read())["step"] == 42):
                assert time.monotonic() < deadline, "the child never beat"
                time.sleep(0.05)
            os.kill(child.pid, signal.SIGSTOP)
            time.sleep(1.8)
            os.kill(child.pid, signal.SIGCONT)
            deadline = time.monotonic() + 10
            while json.loads(open(path).read())["stall"] is None:
                assert time.monotonic() < deadline, "no stall recorded after a 1.8 s stop"
                time.sleep(0.05)
        finally:
            child.kill()
            child.wait()
    stall = json.loads(open(path).read())["stall"]
    assert stall["step"] == 42 and 1.2 < stall["for_s"] < 10
    last = json.loads(open(beat.path).read())
    assert last["step"] is not None and last["stall"] is None


@pytest.mark.parametrize(
    ("name", "finds_unused"),
    [("ddp", False), ("ddp_find_unused_parameters_true", True), ("ddp_find_unused_parameters_false", False)],
)
def test_ddp_strategies_get_the_collective_timeout(name, finds_unused):
    from lightning.pytorch.strategies import DDPStrategy

    strategy = with_collective_timeout({"strategy": name, "devices": 2}, 42)["strategy"]
    assert isinstance(strategy, DDPStrategy)
    assert strategy._timeout == timedelta(seconds=42)
    assert strategy._ddp_kwargs.get("find_unused_parameters", False) is finds_unused


@pytest.mark.parametrize("name", ["auto", "fsdp", "deepspeed"])
def test_other_strategies_are_left_to_lightning(name):
    assert with_collective_timeout({"strategy": name}, 42) == {"strategy": name}


def test_each_finished_step_beats_so_the_file_is_never_behind_a_saved_checkpoint(tmp_path):
    """The launcher's "failed at step N" comes from the beats; the restart continues from the newest checkpoint.
    With a beat only every `every_s`, a rank could save step 6 and die before its file said more than 5 (seen in
    CI). A real Trainer with a minute between timed beats: the file still says the last step, the checkpoint's."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.demos.boring_classes import BoringModel

    beat = Heartbeat(str(tmp_path), 0, every_s=60, step_of=lambda: trainer.global_step)
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=3, save_top_k=-1)
    trainer = pl.Trainer(
        max_steps=6,
        callbacks=[beat.training_started(), checkpoints],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    torch.manual_seed(0)
    with beat:
        trainer.fit(BoringModel())
        step_in_file = json.loads(open(beat.path).read())["step"]
    saved = sorted(int(p.stem.split("step=")[1]) for p in (tmp_path / "checkpoints").glob("*.ckpt"))
    assert saved == [3, 6] and step_in_file == 6
