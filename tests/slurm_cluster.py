"""A real single-node SLURM cluster (slurmctld + slurmd + munged) in a temp folder, for the launcher tests.

Isolated from any cluster on the machine: its own munge socket and key, its own ports, state and logs."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LocalSlurm:
    root: Path
    conf: Path
    env: dict

    def run(self, *command: str, timeout: int = 60, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, **kwargs)

    def stop(self) -> None:
        # Cancel jobs first: a job still running when the daemons go (a failed test) would leave its ranks
        # behind, holding their rendezvous port.
        self.run("scancel", "--full", "--signal=KILL", "--user=root")
        deadline = time.monotonic() + 30
        while self.run("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = self.root / f"{name}.pid"
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass


# States a job does not leave (COMPLETING is not one: its processes may still be running).
ENDED_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}


def job_exit_code(run, job: str, seconds: float = 600) -> int:
    """Wait for `job` to end and return its exit code, as `sbatch --wait` would, but looking every 0.5 s:
    sbatch --wait looks with a back-off that grows to 10 s, which cost each tiny job here about 15 s after it had
    ended. `run` runs a SLURM command against the test's cluster. slurmctld keeps an ended job's record for
    MinJobAge (300 s by default), far longer than a look takes."""
    deadline = time.monotonic() + seconds
    while True:
        shown = run("scontrol", "-o", "show", "job", job).stdout
        state = re.search(r"\bJobState=(\S+)", shown)
        if state and state.group(1) in ENDED_STATES:
            code, signal_number = map(int, re.search(r"\bExitCode=(\d+):(\d+)", shown).groups())
            # sbatch --wait: the script's exit code; 1 for a script killed by a signal or a job that did not complete
            return code or int(bool(signal_number) or state.group(1) != "COMPLETED")
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job} had not ended after {seconds} s: {shown[-2000:]}")
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_local_slurm(root: Path, cpus: int | None = None) -> LocalSlurm:
    root.mkdir(parents=True, exist_ok=True)
    host = socket.gethostname()
    cpus = cpus or os.cpu_count() or 2
    munge_socket = root / "munge.socket"
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    subprocess.run(
        [
            "munged",
            "--force",
            f"--key-file={key}",
            f"--socket={munge_socket}",
            f"--pid-file={root / 'munged.pid'}",
            f"--log-file={root / 'munged.log'}",
            f"--seed-file={root / 'munged.seed'}",
        ],
        check=True,
        capture_output=True,
    )
    (root / "state").mkdir(exist_ok=True)
    (root / "spool").mkdir(exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(f"""ClusterName=magpietest
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
AuthType=auth/munge
# cred_expire: how long a requeued job's credential stays revoked, and so how long SLURM holds the job
# before it may start again (default 120 s; a job released earlier is killed: "Job credential revoked").
AuthInfo=socket={munge_socket},cred_expire=10
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation={root / "state"}
SlurmdSpoolDir={root / "spool"}
SlurmctldPidFile={root / "slurmctld.pid"}
SlurmdPidFile={root / "slurmd.pid"}
SlurmctldLogFile={root / "slurmctld.log"}
SlurmdLogFile={root / "slurmd.log"}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
# Short grace periods: tests requeue and cancel jobs.
KillWait=5
SchedulerParameters=sched_interval=2
NodeName={host} CPUs={cpus} RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
    # The jobs run the interpreter of this test session (the project's venv), whatever is first on PATH.
    env = {**os.environ, "SLURM_CONF": str(conf), "MAGPIE_PYTHON": sys.executable}
    cluster = LocalSlurm(root=root, conf=conf, env=env)
    subprocess.run(["slurmctld", "-f", str(conf)], env=env, check=True, capture_output=True)
    subprocess.run(["slurmd", "-f", str(conf)], env=env, check=True, capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = cluster.run("sinfo", "-h", "-o", "%T").stdout.strip()
        if state.startswith("idle"):
            return cluster
        time.sleep(0.5)
    cluster.stop()
    logs = "\n".join((root / f).read_text()[-2000:] for f in ("slurmctld.log", "slurmd.log") if (root / f).exists())
    raise RuntimeError(f"local SLURM did not come up (sinfo: {state!r}):\n{logs}")
