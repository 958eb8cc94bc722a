"""A run that is stopped, repeated or run twice at once: real recipe processes, real signals, offline W&B read
back. Each case ends in a known state, exits non-zero for unfinished work and says where it continues."""

import glob
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from magpie_testing import read_jsonl, run_recipe, start_recipe

from nemo_ext.errors import ConfigError
from nemo_ext.recipes.stopping import EXIT_STOPPED
from nemo_ext.stages import OFFLINE_PO_DATAGEN, ONLINE_PO
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = [pytest.mark.e2e, pytest.mark.multiprocess]


def grpo_args(tiny, exp_dir, *extra):
    return ["--config-name", "online_po_tiny", f"tiny_root={tiny.root}", f"exp_manager.exp_dir={exp_dir}", *extra]


def run_folders(exp_dir) -> list[Path]:
    return sorted(
        Path(p).parents[1] for p in glob.glob(str(exp_dir / "tiny_online_po" / "*" / "state" / "run_state.json"))
    )


def state(folder: Path) -> dict:
    return json.loads((folder / "state" / "run_state.json").read_text())


def steps_done(folder: Path) -> list[int]:
    path = folder / "memory" / "rank0.jsonl"
    return [row["step"] for row in read_jsonl(path) if row["phase"] == "step"] if path.exists() else []


def checkpoint_steps(folder: Path) -> list[tuple[int, str]]:
    """(step, "last" or "") of each checkpoint NeMo wrote, e.g. tiny_online_po--step=5.0000-epoch=2-last.ckpt."""
    found = []
    for path in glob.glob(str(folder / "checkpoints" / "*.ckpt")):
        match = re.search(r"--step=(\d+)\.0000-epoch=\d+(-last)?\.ckpt$", path)
        found.append((int(match.group(1)), "last" if match.group(2) else ""))
    return sorted(found)


def wait_until(condition, process, timeout=300, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended (exit {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}; {_log_tail(process)}"
        time.sleep(0.05)


def _log_tail(process) -> str:
    """The last lines the process wrote, when start_recipe sent them to a file."""
    path = getattr(process, "log_path", None)
    if not path or not Path(path).exists():
        return "no log"
    return "log tail:\n" + "\n".join(Path(path).read_text(errors="replace").splitlines()[-30:])


def wandb_attempts(exp_dir) -> list[dict]:
    """One entry per attempt (offline W&B writes a file per process), oldest first."""
    attempts = []
    for path in find_offline_runs(str(exp_dir)):
        run = read_offline_run(path)
        attempts.append(
            {
                "id": run.run_id,
                "exit_code": run.exit_code,
                "preempted": run.preempting,
                "train": [int(r["trainer/global_step"]) for r in run.history if "train_loss" in r],
                "telemetry": run.history,
            }
        )
    return attempts


def assert_peak_rss_is_at_least_rss(history):
    rows = [r for r in history if "cpu/rss_gb" in r]
    assert rows
    for row in rows:
        assert row["cpu/peak_rss_gb"] >= row["cpu/rss_gb"], row


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_stop_signal_saves_a_checkpoint_exits_75_and_the_run_resumes(tiny, tmp_path, signum):
    exp_dir = tmp_path / "runs"
    args = grpo_args(tiny, exp_dir, "trainer.max_steps=30")
    process = start_recipe("online_po.py", *args, env={}, cwd=tmp_path, log_path=tmp_path / "first.log")
    wait_until(lambda: run_folders(exp_dir) and len(steps_done(run_folders(exp_dir)[0])) >= 4, process, what="4 steps")
    process.send_signal(signum)
    assert process.wait(timeout=300) == EXIT_STOPPED
    [folder] = run_folders(exp_dir)
    first = state(folder)
    stopped_at = first["global_step"]
    output = (tmp_path / "first.log").read_text()
    checkpoint = folder / "checkpoints" / f"stopped-step={stopped_at}.ckpt"
    assert (
        f"[magpie] stopped by {signum.name} at step {stopped_at}; checkpoint {checkpoint}. "
        f"Continue with the same command and resume={folder}"
    ) in output
    assert (first["status"], first["stopped_by"]) == ("interrupted", signum.name)
    assert checkpoint.is_file()
    assert not (folder / "state" / "run.lock").exists()
    assert steps_done(folder) == list(range(1, stopped_at + 1))
    [attempt] = wandb_attempts(exp_dir)
    assert (attempt["exit_code"], attempt["preempted"]) == (EXIT_STOPPED, True)  # W&B shows it did not finish
    assert attempt["train"] == list(range(stopped_at))  # the signalled step's metrics reached W&B
    assert_peak_rss_is_at_least_rss(attempt["telemetry"])
    if signum != signal.SIGTERM:
        return

    # Continue it: same folder, same W&B run, no step repeated or skipped in W&B or in the rank file.
    result = run_recipe("online_po.py", *args, f"resume={folder}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"[magpie] continuing {folder} from {checkpoint}" in result.stdout
    assert (state(folder)["status"], state(folder)["global_step"], state(folder)["attempts"]) == ("finished", 30, 2)
    assert run_folders(exp_dir) == [folder]
    first_attempt, second_attempt = wandb_attempts(exp_dir)
    assert second_attempt["id"] == first_attempt["id"] == folder.name
    assert second_attempt["exit_code"] == 0 and not second_attempt["preempted"]
    assert first_attempt["train"] + second_attempt["train"] == list(range(30))
    assert steps_done(folder) == list(range(1, 31))


def test_a_signal_during_set_up_ends_the_run_before_its_first_step(tiny, tmp_path):
    exp_dir = tmp_path / "runs"
    process = start_recipe(
        "online_po.py", *grpo_args(tiny, exp_dir), env={}, cwd=tmp_path, log_path=tmp_path / "run.log"
    )
    # The run folder exists once the stop handlers are in place; the models are still to be built.
    wait_until(lambda: run_folders(exp_dir), process, what="the run folder")
    process.send_signal(signal.SIGUSR1)  # what SLURM sends before the time limit; its default action kills
    assert process.wait(timeout=300) == EXIT_STOPPED
    [folder] = run_folders(exp_dir)
    assert (state(folder)["status"], state(folder)["global_step"]) == ("interrupted", 0)
    assert (
        "stopped by SIGUSR1 at step 0; no new checkpoint (nothing trained in this attempt)"
        in (tmp_path / "run.log").read_text()
    )
    assert steps_done(folder) == []


def test_kill_9_loses_at_most_the_checkpoint_cadence_and_resume_last_continues(tiny, tmp_path):
    exp_dir = tmp_path / "runs"
    # The cadence is one declared key, overridden without '+' and without touching every_n_epochs.
    args = grpo_args(
        tiny, exp_dir, "trainer.max_steps=16", "exp_manager.checkpoint_callback_params.every_n_train_steps=5"
    )
    process = start_recipe("online_po.py", *args, env={}, cwd=tmp_path, log_path=tmp_path / "first.log")
    wait_until(
        lambda: run_folders(exp_dir) and len(steps_done(run_folders(exp_dir)[0])) >= 12, process, what="12 steps"
    )
    process.kill()
    assert process.wait(timeout=60) == -signal.SIGKILL
    [folder] = run_folders(exp_dir)
    killed_at = len(steps_done(folder))
    assert state(folder)["status"] == "running"  # what a crash leaves: a dead process's lock and state
    assert json.loads((folder / "state" / "run.lock").read_text())["pid"] == process.pid
    assert glob.glob(str(folder / "checkpoints" / "*step=10.0000*.ckpt"))

    result = run_recipe("online_po.py", *args, "resume=last", cwd=tmp_path)  # the stale lock is detected
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"[magpie] continuing {folder} from {folder}/checkpoints/" in result.stdout
    assert (state(folder)["status"], state(folder)["global_step"]) == ("finished", 16)
    first_attempt, second_attempt = wandb_attempts(exp_dir)
    assert second_attempt["id"] == first_attempt["id"]
    assert first_attempt["exit_code"] is None  # killed: never finished
    # Steps 11..killed_at were lost and run again; every W&B label is still the step that was run. (kill -9 can
    # also cut off the rows the W&B writer had not flushed: a prefix of the steps run.)
    assert first_attempt["train"] == list(range(len(first_attempt["train"])))
    assert len(first_attempt["train"]) <= killed_at
    assert second_attempt["train"] == list(range(10, 16))
    assert steps_done(folder)[-6:] == list(range(11, 17))


def test_a_rerun_gets_its_own_folder_and_resuming_is_explicit_and_checked(tiny_config, tmp_path):
    # A budget in steps alone is the budget: the tiny data is 2 batches per epoch.
    first = ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=5"))
    second = ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=5", "model.optim.lr=2e-4"))
    assert first.trainer.global_step == second.trainer.global_step == 5  # the rerun trained, not zero steps
    assert first.log_dir != second.log_dir
    first_folder = Path(first.log_dir)
    # The default cadence (every 10 steps) does not fire in 5 steps; only the end-of-training last.ckpt exists.
    assert checkpoint_steps(first_folder) == [(5, "last")]

    with pytest.raises(ConfigError, match=r"this one finished \(at step 5\)\. Raise trainer\.max_steps above 5"):
        ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=5", f"resume={first_folder}"))
    with pytest.raises(ConfigError, match=r"changed: model\.optim\.lr: 0\.003 -> 0\.0002"):
        ONLINE_PO.run(
            tiny_config("online_po_tiny", "trainer.max_steps=8", "model.optim.lr=2e-4", f"resume={first_folder}")
        )
    with pytest.raises(ConfigError, match=r"a run folder of stage online_po|no state/run_state.json"):
        ONLINE_PO.run(tiny_config("online_po_tiny", f"resume={tmp_path}"))

    longer = ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=8", f"resume={first_folder}"))
    assert longer.log_dir == first.log_dir and longer.trainer.global_step == 8
    ids = [attempt["id"] for attempt in wandb_attempts(tmp_path / "runs")]
    assert sorted(ids) == sorted([first_folder.name, first_folder.name, Path(second.log_dir).name])


def test_a_new_slurm_job_continuing_a_run_keeps_its_wandb_run_and_group(tiny_config, tmp_path):
    # Under SLURM the W&B group is the job id; a later job that continues the folder has another id. The group is
    # not a changed setting: the continued run stays in its W&B run and group.
    first = ONLINE_PO.run(
        tiny_config("online_po_tiny", "trainer.max_steps=3", "exp_manager.wandb_logger_kwargs.group=job-1001")
    )
    folder = Path(first.log_dir)
    later = ONLINE_PO.run(
        tiny_config(
            "online_po_tiny",
            "trainer.max_steps=5",
            "exp_manager.wandb_logger_kwargs.group=job-2002",
            f"resume={folder}",
        )
    )
    assert later.log_dir == first.log_dir and later.trainer.global_step == 5
    runs = [read_offline_run(path) for path in find_offline_runs(str(tmp_path / "runs"))]
    assert [(run.run_id, run.group) for run in runs] == [(folder.name, "job-1001")] * 2
    assert [int(r["trainer/global_step"]) for r in runs[1].history if "train_loss" in r][0] == 3


def test_cadence_checkpoints_come_every_n_steps(tiny_config):
    run = ONLINE_PO.run(
        tiny_config(
            "online_po_tiny", "trainer.max_steps=7", "exp_manager.checkpoint_callback_params.every_n_train_steps=3"
        )
    )
    assert checkpoint_steps(Path(run.log_dir)) == [(3, ""), (6, ""), (7, "last")]


def test_two_runs_at_once_get_two_folders_and_a_resume_of_a_running_one_is_refused(tiny, tmp_path):
    exp_dir = tmp_path / "runs"
    args = grpo_args(tiny, exp_dir, "trainer.max_steps=400")
    runs = [
        start_recipe("online_po.py", *args, env={}, cwd=tmp_path, log_path=tmp_path / f"run{i}.log") for i in range(2)
    ]
    for process in runs:
        wait_until(
            lambda: len(run_folders(exp_dir)) == 2 and all(len(steps_done(f)) >= 2 for f in run_folders(exp_dir)),
            process,
            what="both runs training",
        )
    folders = run_folders(exp_dir)
    holder = {state(f)["pid"]: f for f in folders}
    assert set(holder) == {p.pid for p in runs}

    busy = holder[runs[0].pid]
    result = run_recipe("online_po.py", *args, f"resume={busy}", cwd=tmp_path)
    assert result.returncode == 2
    assert f"it is held by pid {runs[0].pid} on " in result.stderr
    assert result.stderr.startswith(f"config error: resume='{busy}' is invalid")

    for process in runs:
        process.send_signal(signal.SIGTERM)
    assert [p.wait(timeout=300) for p in runs] == [EXIT_STOPPED, EXIT_STOPPED]
    for folder in folders:
        steps = steps_done(folder)
        assert steps == list(range(1, len(steps) + 1))  # one run's rows per file, never interleaved
        assert [p.name for p in (folder / "checkpoints").glob("stopped-*")] == [f"stopped-step={len(steps)}.ckpt"]


def test_two_datagen_runs_keep_their_own_outputs(tiny_config):
    first = OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny"))
    second = OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny"))
    assert first.audio_dir != second.audio_dir
    assert len(first.metrics_files()) == len(second.metrics_files()) == 4


SECRET = "wandb-secret-0123456789abcdef"


@pytest.mark.parametrize(
    ("script", "config"),
    [
        ("online_po.py", "online_po_tiny"),
        ("offline_po_datagen.py", "offline_po_datagen_tiny"),
        ("offline_po_dpo.py", "offline_po_dpo_tiny"),
    ],
)
def test_a_refused_secret_reaches_no_file(tiny, tmp_path, script, config):
    from_cli = ["--config-name", config, f"+exp_manager.wandb_logger_kwargs.api_key={SECRET}"]
    yaml_dir = tmp_path / "conf"
    yaml_dir.mkdir()
    (yaml_dir / "with_secret.yaml").write_text(
        f"defaults:\n  - {config}\n  - _self_\nhf_token: {SECRET}\n"  # a secret written into a YAML
    )
    from_yaml = ["--config-dir", str(yaml_dir), "--config-name", "with_secret"]
    for arguments in (from_cli, from_yaml):
        result = run_recipe(
            script, *arguments, f"tiny_root={tiny.root}", f"exp_manager.exp_dir={tmp_path / 'runs'}", cwd=tmp_path
        )
        assert result.returncode == 2, result.stderr[-2000:]
        assert "never in a config that is written to disk" in result.stderr
        assert SECRET not in result.stdout + result.stderr
    holding = subprocess.run(["grep", "-rl", SECRET, str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert holding == [str(yaml_dir / "with_secret.yaml")]  # only the user's own file


def datagen_outputs(folder: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((folder / "audios").glob("*_metrics.json"))}


def test_an_interrupted_datagen_resumes_to_the_same_files_as_an_uninterrupted_run(tiny, tmp_path):
    # One item per batch, reseeded per batch: each item's generation depends on nothing that ran before it.
    args = [
        "--config-name",
        "offline_po_datagen_tiny",
        f"tiny_root={tiny.root}",
        "data.batch_size=1",
        "model.datagen_seed=7",
    ]
    whole = run_recipe("offline_po_datagen.py", *args, f"exp_manager.exp_dir={tmp_path / 'whole'}", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    [whole_folder] = (tmp_path / "whole" / "tiny_offline_po_datagen").iterdir()

    exp_dir = tmp_path / "stopped"
    process = start_recipe(
        "offline_po_datagen.py",
        *args,
        f"exp_manager.exp_dir={exp_dir}",
        env={},
        cwd=tmp_path,
        log_path=tmp_path / "stopped.log",
    )
    folder_glob = str(exp_dir / "tiny_offline_po_datagen" / "*" / "audios" / "*_metrics.json")
    wait_until(lambda: len(glob.glob(folder_glob)) >= 2, process, what="2 scored items")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == EXIT_STOPPED
    [folder] = (exp_dir / "tiny_offline_po_datagen").iterdir()
    first_attempt = {p.name: p.stat().st_mtime_ns for p in (folder / "audios").glob("*_metrics.json")}
    assert 2 <= len(first_attempt) < 4

    resumed = run_recipe(
        "offline_po_datagen.py", *args, f"exp_manager.exp_dir={exp_dir}", f"resume={folder}", cwd=tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"[magpie] {len(first_attempt)} items already complete in {folder}; generating the rest" in resumed.stdout
    # The items done before the stop were not generated again; the final set is the uninterrupted run's.
    assert {
        p.name: p.stat().st_mtime_ns for p in (folder / "audios").glob("*_metrics.json") if p.name in first_attempt
    } == first_attempt
    assert datagen_outputs(folder) == datagen_outputs(whole_folder)
    assert sorted(p.name for p in (folder / "audios").iterdir()) == sorted(
        p.name for p in (whole_folder / "audios").iterdir()
    )


def _read_only_mount(folder):
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"needs root and a tmpfs mount to make a read-only folder: {mounted.stderr.decode()[-200:]}")


@pytest.mark.parametrize("dry_run", ["true", "false"])
def test_a_read_only_experiment_folder_is_one_config_error(tiny, tmp_path, dry_run):
    read_only = tmp_path / "read_only"
    _read_only_mount(read_only)
    try:
        result = run_recipe(
            "online_po.py",
            *grpo_args(tiny, read_only / "runs", f"dry_run={dry_run}"),
            cwd=tmp_path,
            timeout=120,
        )
    finally:
        subprocess.run(["umount", str(read_only)], check=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (
        f"config error: exp_manager.exp_dir='{read_only}/runs' is invalid; allowed: a folder this user can write "
        f"({read_only} is read-only or not writable)"
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_an_experiment_folder_that_cannot_be_created_is_one_config_error(tiny, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    result = run_recipe("online_po.py", *grpo_args(tiny, blocker / "runs", "dry_run=true"), cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"config error: exp_manager.exp_dir='{blocker}/runs' is invalid; allowed: a folder that can be created "
        f"({blocker} is a file)"
    )
