"""Two real SLURM nodes on this machine, submitted through scripts/slurm/submit.sh.

tests/two_node_slurm.sh gives each slurmd its own network namespace (node1 = 10.77.41.1, node2 = .2 on a private
bridge) and its own hostname; munged and slurmctld run on the host. Job tasks inherit the node's namespaces, so
rank 0 and rank 1 run on different hosts and rendezvous across the bridge."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from magpie_testing import REPO, assert_wandb_reduces_rank_files, read_jsonl
from slurm_cluster import job_exit_code

from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

HARNESS = Path(__file__).with_name("two_node_slurm.sh")


def _sysfs_shows_this_network_namespace() -> bool:
    """False inside `unshare -n` (scripts/test_no_network.sh): /sys still shows the host's interfaces, so the
    harness cannot find the bridge it made and its stop would leave the nodes' slurmd running."""
    try:
        listed = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    names = {line.split(":")[1].strip().split("@")[0] for line in listed.splitlines() if ":" in line}
    return names == set(os.listdir("/sys/class/net"))


requires_sysfs_of_this_netns = pytest.mark.skipif(
    not _sysfs_shows_this_network_namespace(),
    reason="/sys shows another network namespace (unshare -n): the two-node harness needs a host network namespace",
)
requires_two_node_slurm = pytest.mark.skipif(
    not (
        os.geteuid() == 0
        and all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "munged", "ip", "nsenter", "unshare"))
    ),
    reason="needs root, iproute2, util-linux and Debian's slurm-wlm + munge (bash scripts/install_test_tools.sh)",
)
pytestmark = [
    # A job here waits up to 900 s for its steps (submit); the requeue tests run two attempts.
    pytest.mark.timeout(1200),
    pytest.mark.slurm,
    pytest.mark.e2e,
    pytest.mark.multiprocess,
    requires_two_node_slurm,
    requires_sysfs_of_this_netns,
]


class TwoNodeCluster:
    def __init__(self, root: Path):
        self.root = root
        self.env = {**os.environ, "SLURM_CONF": str(root / "slurm.conf"), "MAGPIE_PYTHON": sys.executable}

    def run(self, *command: str, timeout: int = 60) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)

    def state(self, job: str) -> str:
        return self.run("squeue", "-h", "-j", job, "-o", "%T %r").stdout.strip()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_nodes")
    started = subprocess.run(["bash", str(HARNESS), "start", str(root)], capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield TwoNodeCluster(root)
    finally:
        subprocess.run(["bash", str(HARNESS), "stop", str(root)], capture_output=True, timeout=180)


def submit(cluster, tmp_path, stage, *overrides, wait=True, time_limit="00:10:00"):
    env = {
        **cluster.env,
        "NODES": "2",
        "GPUS_PER_NODE": "0",
        "TASKS_PER_NODE": "1",
        "CPUS_PER_TASK": "1",
        "TIME": time_limit,
        "MAGPIE_EXP_DIR": str(tmp_path / "runs"),
        "SBATCH_EXTRA": f"--output={tmp_path}/job-%j.out",
    }
    result = subprocess.run(
        ["bash", str(REPO / "scripts/slurm/submit.sh"), stage, *overrides],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    [job] = [line.split()[-1] for line in result.stdout.splitlines() if line.startswith("Submitted batch job")]
    if wait and result.returncode == 0:  # the job's exit code, as `sbatch --wait` gives it
        result.returncode = job_exit_code(cluster.run, job, 900)
    return result, job


def tiny_args(stage, fixtures):
    return ["--config-name", f"{stage}_tiny", f"tiny_root={fixtures.root}"]


def ranks_and_hosts(output: str) -> dict[int, str]:
    """From each rank's start line: `[magpie] rank R of W on HOST`."""
    found = {}
    for line in output.splitlines():
        if line.startswith("[magpie] rank ") and " of 2 on " in line:
            words = line.split()
            found[int(words[2])] = words[-1]
    return found


@pytest.mark.parametrize("stage", ["online_po", "offline_po_datagen", "offline_po_dpo"])
def test_each_stage_runs_one_rank_per_node(cluster, tmp_path, tiny, stage):
    result, job = submit(cluster, tmp_path, stage, *tiny_args(stage, tiny), "trainer.max_steps=2")
    output = (tmp_path / f"job-{job}.out").read_text()
    assert result.returncode == 0, output[-4000:]
    assert f"[magpie] job {job} (restart 0): {stage} on 2 node(s) x 1 task(s), rendezvous 10.77.41.1:" in output
    assert ranks_and_hosts(output) == {0: "node1", 1: "node2"}
    # NeMo 3.0.0 looked up Lightning 1's attribute and logged this under SLURM too.
    assert "multi-node training without SLURM handling the processes" not in output
    run_dir = tmp_path / "runs" / f"tiny_{stage}" / job
    assert json.loads((run_dir / "state" / "run_state.json").read_text())["status"] == "finished"
    if stage == "offline_po_dpo":
        return
    for rank, host in ((0, "node1"), (1, "node2")):
        rows = read_jsonl(run_dir / "memory" / f"rank{rank}.jsonl")
        assert {(r["host"], r["world_size"], r["cluster_environment"]) for r in rows} == {(host, 2, "SLURMEnvironment")}
    assert_wandb_reduces_rank_files(tmp_path / "runs", run_dir / "memory", ranks=2)
    if stage == "offline_po_datagen":
        metrics = glob.glob(str(run_dir / "audios" / "*_metrics.json"))
        assert sorted(json.loads(Path(m).read_text())["item_id"] for m in metrics) == [0, 1, 2, 3]


def wait_for(condition, what, seconds=300, seen=None):
    """Poll `condition`; past `seconds`, fail with `seen()` (what there was to see: a log's tail, a state)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            shown = f"; saw:\n{seen()}" if seen else ""
            raise AssertionError(f"timed out after {seconds} s waiting for {what}{shown}")
        time.sleep(0.5)


def wait_for_requeue(cluster, job, *updates):
    """Wait until the job is requeued (SLURM then holds it for cred_expire, 10 s in this cluster, before it may
    start again) and apply `updates` to the next attempt, e.g. TimeLimit=00:10:00."""
    wait_for(
        lambda: cluster.state(job) == "PENDING BeginTime", "the requeue", 300, seen=lambda: repr(cluster.state(job))
    )
    if updates:
        assert cluster.run("scontrol", "update", f"JobId={job}", *updates).returncode == 0


def wait_until_done(cluster, job, seconds=600):
    wait_for(lambda: cluster.state(job) == "", "the job to end", seconds, seen=lambda: repr(cluster.state(job)))


def step_rows(path: Path) -> list[list[int]]:
    """The steps each attempt trained, from a rank file: a new attempt starts with a `load` row."""
    attempts = []
    for row in read_jsonl(path):
        if row["phase"] == "load":
            attempts.append([])
        elif row["phase"] == "step":
            attempts[-1].append(row["step"])
    return attempts


def test_a_usr1_requeue_during_training_loses_no_step_on_either_node(cluster, tmp_path, tiny):
    max_steps = 30
    _, job = submit(
        cluster, tmp_path, "online_po", *tiny_args("online_po", tiny), f"trainer.max_steps={max_steps}", wait=False
    )
    run_dir = tmp_path / "runs" / "tiny_online_po" / job
    rank0 = run_dir / "memory" / "rank0.jsonl"
    wait_for(lambda: rank0.exists() and rank0.read_text().count('"phase": "step"') >= 3, "3 steps")
    assert cluster.run("scancel", "--signal=USR1", job).returncode == 0
    wait_for_requeue(cluster, job)
    wait_until_done(cluster, job)

    output = (tmp_path / f"job-{job}.out").read_text()
    assert f"[magpie] job {job} stopped with its progress saved (exit 75): requeueing it" in output, output[-4000:]
    assert f"[magpie] job {job} (restart 1)" in output
    [stopped] = glob.glob(str(run_dir / "checkpoints" / "stopped-step=*.ckpt"))
    stopped_at = int(stopped.split("=")[-1].removesuffix(".ckpt"))
    assert f"[magpie] continuing {run_dir} from {stopped}" in output
    for rank in (0, 1):
        first, second = step_rows(run_dir / "memory" / f"rank{rank}.jsonl")
        assert first == list(range(1, stopped_at + 1)) and second == list(range(stopped_at + 1, max_steps + 1))
    # Every step logged on the ranks is in the W&B run, in the one run id of the job, without a gap.
    attempts = [read_offline_run(f) for f in find_offline_runs(str(tmp_path / "runs"))]
    assert {a.run_id for a in attempts} == {job} and [a.exit_code for a in attempts] == [75, 0]
    train_steps = [int(r["trainer/global_step"]) for a in attempts for r in a.history if "train_loss" in r]
    assert train_steps == list(range(max_steps))
    assert json.loads((run_dir / "state" / "run_state.json").read_text())["status"] == "finished"
    assert not glob.glob(str(run_dir / "checkpoints" / "*-unfinished"))


def test_the_launchers_own_signal_ends_in_a_requeue_that_continues(cluster, tmp_path, tiny):
    """TIME=00:03:00 with the sbatch script's own --signal=SIGUSR1@120: SLURM signals the job about a minute
    in, once it trains (a signal due before srun has started the step reaches no task at all). The training
    is open-ended (max_steps=100000) so the signal always lands before it ends. The requeued attempt gets a
    longer limit; once it has continued from the saved step, the test cancels it."""
    _, job = submit(
        cluster,
        tmp_path,
        "online_po",
        *tiny_args("online_po", tiny),
        "trainer.max_steps=100000",
        wait=False,
        time_limit="00:03:00",
    )
    wait_for_requeue(cluster, job, "TimeLimit=00:10:00")
    run_dir = tmp_path / "runs" / "tiny_online_po" / job
    job_log = tmp_path / f"job-{job}.out"

    def attempts(rank):
        """(first attempt's steps, second attempt's steps). A signal before training starts leaves the first
        attempt without a `load` row in the rank file."""
        rows = step_rows(run_dir / "memory" / f"rank{rank}.jsonl") if (run_dir / "memory").exists() else []
        stopped_in_set_up = "at step 0; no new checkpoint" in log_text()
        return ([], rows[0] if rows else []) if stopped_in_set_up else (rows + [[], []])[:2]

    def log_text():
        return job_log.read_text() if job_log.exists() else ""

    def second_attempt_trained():
        return "(restart 1)" in log_text() and len(attempts(1)[1]) >= 2

    def log_tail():
        return "\n".join(log_text().splitlines()[-30:])

    # Each wait is for one thing, with its own deadline, from the moment the previous one ended: on a busy machine
    # the requeued attempt's imports alone take a minute.
    wait_for(lambda: "(restart 1)" in log_text(), "the requeued attempt to start", 300, seen=log_tail)
    wait_for(second_attempt_trained, "the second attempt's steps", 300, seen=log_tail)
    assert cluster.run("scancel", job).returncode == 0
    wait_until_done(cluster, job)
    output = job_log.read_text()
    assert "[magpie] SIGUSR1 received" in output, output[-4000:]
    assert f"[magpie] job {job} stopped with its progress saved (exit 75): requeueing it" in output
    for rank in (0, 1):
        first, second = attempts(rank)
        stopped_at = len(first)
        assert first == list(range(1, stopped_at + 1)) and second[:2] == [stopped_at + 1, stopped_at + 2]
    if stopped_at:
        assert f"[magpie] continuing {run_dir} from {run_dir}/checkpoints/stopped-step={stopped_at}.ckpt" in output


def test_a_usr1_before_training_starts_ends_in_a_requeue(cluster, tmp_path, tiny):
    _, job = submit(cluster, tmp_path, "online_po", *tiny_args("online_po", tiny), "trainer.max_steps=3", wait=False)
    run_dir = tmp_path / "runs" / "tiny_online_po" / job
    # The run folder exists (the stop handlers are in place); no step has started.
    wait_for(lambda: (run_dir / "state" / "run_state.json").exists(), "the run folder")
    assert not (run_dir / "memory").exists()
    assert cluster.run("scancel", "--signal=USR1", job).returncode == 0
    wait_for_requeue(cluster, job)
    wait_until_done(cluster, job)
    output = (tmp_path / f"job-{job}.out").read_text()
    assert "stopped by SIGUSR1 at step 0; no new checkpoint (nothing trained in this attempt)" in output, output[-4000:]
    state = json.loads((run_dir / "state" / "run_state.json").read_text())
    assert (state["status"], state["global_step"], state["attempts"]) == ("finished", 3, 2)


def heartbeat(run_dir: Path, rank: int) -> dict:
    try:
        return json.loads((run_dir / "state" / "heartbeat" / f"rank{rank}.json").read_text())
    except (OSError, ValueError):
        return {}


def alive(pid: int) -> bool:
    try:
        # The process may end between any two looks: a missing /proc entry is an ended process too.
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has ended
    except (FileNotFoundError, ProcessLookupError):
        return False


def continued_from(output: str, run_dir: Path) -> int:
    """The step of the checkpoint the restarted attempt continued from: `[magpie] continuing ... from ...`, the
    same line from each rank."""
    lines = {line for line in output.splitlines() if line.startswith(f"[magpie] continuing {run_dir} from ")}
    assert len(lines) == 1, lines
    return int(lines.pop().rsplit("step=", 1)[1].split(".")[0].split("-")[0])


def fail_rank_1_and_wait(cluster, tmp_path, tiny, hurt, at_step, max_steps, cadence, *overrides):
    """Submit GRPO on two nodes, `hurt(pid)` rank 1 (on node2) once it has reached `at_step`, and wait for the job
    to end. Returns (job, run_dir, job log, the pids of the first attempt, seconds from the fault until every
    rank of the first attempt had ended)."""
    _, job = submit(
        cluster,
        tmp_path,
        "online_po",
        *tiny_args("online_po", tiny),
        f"trainer.max_steps={max_steps}",
        f"exp_manager.checkpoint_callback_params.every_n_train_steps={cadence}",
        "faults.heartbeat_every_s=1",
        *overrides,
        wait=False,
    )
    run_dir = tmp_path / "runs" / "tiny_online_po" / job
    wait_for(lambda: (heartbeat(run_dir, 1).get("step") or 0) >= at_step, f"rank 1 at step {at_step}")
    pids = [heartbeat(run_dir, rank)["pid"] for rank in (0, 1)]
    assert heartbeat(run_dir, 1)["node"] == "node2"
    hurt_at = time.monotonic()
    hurt(pids[1])
    wait_for(lambda: not any(alive(pid) for pid in pids), "every rank of the first attempt to end", 120)
    ended_after = time.monotonic() - hurt_at
    wait_until_done(cluster, job)
    return job, run_dir, (tmp_path / f"job-{job}.out").read_text(), pids, ended_after


def assert_continued_from_the_newest_checkpoint(output, run_dir, job, max_steps, cadence):
    """Both ranks: the first attempt trained 1..k, the restart continued from the newest checkpoint (losing at
    most the cadence) to the end; the W&B run (the job's one run id) holds both attempts."""
    restarted = [line for line in output.splitlines() if line.startswith(f"[magpie] job {job}: restart 1 of 2")]
    assert len(restarted) == 1, output[-4000:]
    failed_at = int(restarted[0].split("(failed at step ")[1].split(")")[0])
    start = continued_from(output, run_dir)
    assert start % cadence == 0 and failed_at - cadence <= start <= failed_at
    for rank in (0, 1):
        first, second = step_rows(run_dir / "memory" / f"rank{rank}.jsonl")
        assert first == list(range(1, len(first) + 1)) and len(first) >= start
        assert second == list(range(start + 1, max_steps + 1))
    attempts = [read_offline_run(f) for f in find_offline_runs(str(run_dir.parents[1]))]
    assert {a.run_id for a in attempts} == {job} and attempts[-1].exit_code == 0
    trained = [[int(r["trainer/global_step"]) for r in a.history if "train_loss" in r] for a in attempts]
    assert trained[-1] == list(range(start, max_steps))
    state = json.loads((run_dir / "state" / "run_state.json").read_text())
    assert (state["status"], state["global_step"]) == ("finished", max_steps)
    return failed_at, start


def test_a_killed_rank_ends_every_rank_and_the_job_continues_in_place(cluster, tmp_path, tiny):
    max_steps, cadence = 12, 3
    job, run_dir, output, pids, ended_after = fail_rank_1_and_wait(
        cluster, tmp_path, tiny, lambda pid: os.kill(pid, signal.SIGKILL), 5, max_steps, cadence
    )
    assert ended_after < 120
    assert "[magpie] first to end: rank 1 on node2: Killed (signal 9, SIGKILL)" in output, output[-4000:]
    failed_at, start = assert_continued_from_the_newest_checkpoint(output, run_dir, job, max_steps, cadence)
    print(f"kill -9 of rank 1 at step {failed_at}: every rank ended {ended_after:.1f} s later; continued from {start}")


def test_a_hung_rank_ends_the_job_within_the_collective_timeout_and_it_continues(cluster, tmp_path, tiny):
    max_steps, cadence, timeout_s = 8, 2, 10
    job, run_dir, output, pids, ended_after = fail_rank_1_and_wait(
        cluster,
        tmp_path,
        tiny,
        lambda pid: os.kill(pid, signal.SIGSTOP),
        3,
        max_steps,
        cadence,
        f"faults.collective_timeout_s={timeout_s}",
    )
    # The timeout, then srun's KillWait (5 s in this cluster) for the stopped rank, then process exit.
    assert ended_after < timeout_s + 60, ended_after
    said = "\n".join(line for line in output.splitlines() if line.startswith("[magpie]"))
    # The waiting rank times out and ends first; the report names the stopped one as where to look, whether srun
    # killed it stopped or continued it first (then it beats again for a while, and its stall is reported).
    assert f"[magpie] the first to go quiet: rank 1 on node2 (pid {pids[1]}), at step " in said, said
    assert f"[magpie] rank 1 on node2 (pid {pids[1]}) went quiet" in said, said
    assert f"[magpie] rank 0 on node1 (pid {pids[0]}) beat until the end, at step " in said, said
    failed_at, start = assert_continued_from_the_newest_checkpoint(output, run_dir, job, max_steps, cadence)
    print(f"SIGSTOP of rank 1 at step {failed_at}: every rank ended {ended_after:.1f} s later; continued from {start}")


def test_a_crash_that_repeats_is_not_restarted_and_a_new_job_continues_its_run(cluster, tmp_path, tiny):
    """Rank 1 dies in set-up in two attempts in a row (a bad node, a model that cannot load): the launcher stops
    after one restart instead of burning the allocation, says how to continue, and a new job continues the run
    folder with resume=, in the first job's W&B run and group."""
    args = (*tiny_args("online_po", tiny), "faults.heartbeat_every_s=1")
    _, job = submit(cluster, tmp_path, "online_po", *args, "trainer.max_steps=3", wait=False)
    run_dir = tmp_path / "runs" / "tiny_online_po" / job
    killed = []
    for _ in range(2):
        wait_for(lambda: heartbeat(run_dir, 1).get("pid") not in (None, *killed), "a new attempt's rank 1")
        killed.append(heartbeat(run_dir, 1)["pid"])
        assert heartbeat(run_dir, 1)["step"] is None  # not training yet
        os.kill(killed[-1], signal.SIGKILL)
    wait_until_done(cluster, job)
    output = (tmp_path / f"job-{job}.out").read_text()
    assert f"[magpie] job {job}: restart 1 of 2 in place (failed in set-up)" in output, output[-4000:]
    told = f"[magpie] job {job}: failed twice in set-up: a crash that repeats; not restarting."
    assert told in output and f"resume={run_dir}" in output
    assert "restart 2 of 2" not in output
    assert json.loads((run_dir / "state" / "run_state.json").read_text())["status"] != "finished"

    result, later_job = submit(cluster, tmp_path, "online_po", *args, "trainer.max_steps=3", f"resume={run_dir}")
    later_output = (tmp_path / f"job-{later_job}.out").read_text()
    assert result.returncode == 0 and later_job != job, later_output[-4000:]
    assert json.loads((run_dir / "state" / "run_state.json").read_text())["status"] == "finished"
    runs = [read_offline_run(f) for f in find_offline_runs(str(tmp_path / "runs"))]
    finished = [run for run in runs if run.exit_code == 0]
    assert [(run.run_id, run.group) for run in finished] == [(job, job)]
    assert [int(r["trainer/global_step"]) for r in finished[0].history if "train_loss" in r] == [0, 1, 2]
