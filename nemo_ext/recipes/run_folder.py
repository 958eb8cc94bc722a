"""Where a run writes, whether it starts fresh or continues, and who holds the folder.

- A new run gets a version folder of its own, created atomically: two runs started at once in one experiment
  never share `checkpoints/`, `audios/` or `memory/`.
- Continuing is explicit: `resume=<run folder>` (or `resume=last`), or a SLURM requeue (the version is the job
  id). Continuing checks the folder first and refuses, in one line, a run that finished, a run of another
  stage or config, and a run that is still going (its lock names host and PID; a dead holder's lock is stale).
- NeMo's own resume (`resume_if_exists`) is not used: it moves files between ranks without a barrier and
  refuses to start when the newest checkpoint carries an `-unfinished` marker. Here the newest complete
  checkpoint of the folder is chosen and passed to `trainer.fit(ckpt_path=...)`.

Our files live in `<run folder>/state/` (NeMo's exp_manager moves every top-level file of a run folder into
`run_<k>/` at each start): `config.yaml` (the validated config; secrets were refused before anything is
written), `run_state.json` (stage, status, step, attempts), `run.lock` while a process holds the folder."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from nemo_ext.errors import ConfigError
from nemo_ext.stages.stage import Loop, rank_from_environment

STATE_FILE = os.path.join("state", "run_state.json")
LOCK_FILE = os.path.join("state", "run.lock")
CONFIG_FILE = os.path.join("state", "config.yaml")
# Ranks started by Lightning's launcher (trainer.devices>1 on one node) re-run the recipe: they find the
# folder rank 0 chose here instead of choosing their own.
RUN_DIR_ENV = "MAGPIE_RUN_DIR"
# Keys that may change when a run is continued: the step budget, and knobs that do not change what is trained.
MAY_CHANGE_ON_RESUME = (
    "resume",
    "dry_run",
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.enable_progress_bar",
    "data.num_workers",
    "telemetry",
)

# Values the SLURM launcher derives from the job (the W&B group is its job id): a new job continuing a run folder
# gets new ones. They are not compared, and the run keeps its own (its W&B run stays in its group).
DERIVED_FROM_THE_JOB = ("exp_manager.wandb_logger_kwargs.group",)

RUNNING, FINISHED, INTERRUPTED, FAILED = "running", "finished", "interrupted", "failed"


@dataclass(frozen=True)
class RunFolder:
    path: str  # <exp_dir>/<name>/<version>
    version: str
    resuming: bool
    owner: bool  # this process created or locked it (rank 0); other ranks only write into it
    kept: tuple[tuple[str, object], ...] = ()  # (dotted key, the run's own value) for DERIVED_FROM_THE_JOB

    @property
    def checkpoint_dir(self) -> str:
        return os.path.join(self.path, "checkpoints")

    def newest_checkpoint(self) -> str | None:
        """The newest complete checkpoint: NeMo's (top-k, last), or one saved when a run was stopped."""
        from nemo.utils.callbacks.nemo_model_checkpoint import NeMoModelCheckpoint

        found = [
            path
            for path in glob.glob(os.path.join(self.checkpoint_dir, "**", "*.ckpt"), recursive=True)
            if not NeMoModelCheckpoint.is_checkpoint_unfinished(path)
        ]
        return max(found, key=os.path.getmtime) if found else None

    def checkpoint_steps(self) -> set[int]:
        """Global steps of the checkpoints in the folder, from their names (NeMo's `step=12.0000`, ours
        `stopped-step=12` / `final-step=12`)."""
        steps = set()
        for path in glob.glob(os.path.join(self.checkpoint_dir, "**", "*.ckpt"), recursive=True):
            match = re.search(r"step=(\d+)(?:\.0+)?(?:\D|$)", os.path.basename(path))
            if match:
                steps.add(int(match.group(1)))
        return steps

    def read_state(self) -> dict:
        return read_state(self.path)

    def write_state(self, **changes) -> None:
        if not self.owner:
            return
        state = {**read_state(self.path), **changes, "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
        _write_json_atomically(os.path.join(self.path, STATE_FILE), state)

    def release(self) -> None:
        """Drop the lock (rank 0, at the end of the run, whatever the outcome)."""
        if self.owner:
            lock = os.path.join(self.path, LOCK_FILE)
            if _read_json(lock).get("pid") == os.getpid():
                os.remove(lock)
        if os.environ.get(RUN_DIR_ENV) == self.path:
            del os.environ[RUN_DIR_ENV]


def read_state(path: str) -> dict:
    return _read_json(os.path.join(path, STATE_FILE))


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _write_json_atomically(path: str, content: dict) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w") as f:
        json.dump(content, f, indent=1)
    os.replace(temporary, path)


def _slurm_version() -> str | None:
    job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if job:
        return f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}"
    return os.environ.get("SLURM_JOB_ID")


def experiment_dir(settings) -> str:
    """<exp_manager.exp_dir>/<name>: where a stage's run folders go (NeMo's default exp_dir: ./nemo_experiments)."""
    exp_dir = settings.exp_manager.node.get("exp_dir") or os.path.join(os.getcwd(), "nemo_experiments")
    return os.path.abspath(os.path.join(exp_dir, settings.run.name))


def planned_run_folder(settings) -> str | None:
    """The folder this launch will use when it is known before the run starts (resume=, or the SLURM job's own),
    without creating or checking it: the launcher reads the ranks' heartbeats there when a job step fails."""
    if settings.run.resume:
        try:
            return _requested_folder(experiment_dir(settings), str(settings.run.resume))
        except ConfigError:
            return None
    version = _slurm_version()
    return os.path.join(experiment_dir(settings), version) if version else None


def check_resume(settings) -> None:
    """The checks a launch makes on `resume=` before it takes the folder, reading only: the dry run runs them too,
    so a run that cannot be continued (finished, of another stage, with a changed config) is refused on the login
    node before anything is queued."""
    if not settings.run.resume:
        return
    path = _requested_folder(experiment_dir(settings), str(settings.run.resume))
    folder = RunFolder(path, os.path.basename(path), resuming=True, owner=False)
    _check_resumable(folder, settings.config, settings.stage.name, trains=settings.stage.loop is Loop.FIT)


def open_run_folder(settings) -> RunFolder:
    """Choose (and on rank 0 create, lock and describe) the run folder for this launch. Raises ConfigError
    before any model is built when continuing is refused."""
    cfg, stage = settings.config, settings.stage.name
    experiment = experiment_dir(settings)
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited:
        return RunFolder(inherited, os.path.basename(inherited), resuming=bool(read_state(inherited)), owner=False)
    owner = rank_from_environment() == 0
    requested = settings.run.resume
    slurm_version = _slurm_version()
    if requested:
        path = _requested_folder(experiment, str(requested))
        folder = RunFolder(path, os.path.basename(path), resuming=True, owner=owner)
    elif slurm_version:
        # Every rank of a job (and every requeue of it) computes the same folder.
        path = os.path.join(experiment, slurm_version)
        folder = RunFolder(path, slurm_version, resuming=os.path.isfile(os.path.join(path, STATE_FILE)), owner=owner)
    else:
        if not owner:
            raise ConfigError(
                "resume", None, f"a run folder: rank {rank_from_environment()} was started without rank 0's folder"
            )
        folder = _create_new_folder(experiment)
    if folder.resuming:
        _check_resumable(folder, cfg, stage, trains=settings.stage.loop is Loop.FIT)
        folder = dataclasses.replace(folder, kept=_kept_from_the_run(folder))
    if owner:
        os.makedirs(os.path.join(folder.path, "state"), exist_ok=True)
        _take_lock(folder)
        _describe(folder, cfg, stage)
        os.environ[RUN_DIR_ENV] = folder.path
    return folder


def _requested_folder(experiment: str, requested: str) -> str:
    if requested == "last":
        runs = [p for p in glob.glob(os.path.join(experiment, "*")) if os.path.isfile(os.path.join(p, STATE_FILE))]
        if not runs:
            raise ConfigError("resume", requested, f"a run folder; {experiment} holds no run to continue")
        return max(runs, key=lambda p: os.path.getmtime(os.path.join(p, STATE_FILE)))
    path = os.path.abspath(requested if os.path.isabs(requested) else os.path.join(experiment, requested))
    if os.path.isfile(requested) and requested.endswith((".ckpt", ".nemo")):
        # A checkpoint file, e.g. one written by NeMo's own recipe: its optimizer state cannot continue here
        # (NeMo's optimizer also holds the reward models' parameters), but its weights can start a run.
        raise ConfigError(
            "resume",
            requested,
            "null, last, or a run folder of this project; to start from this checkpoint's weights (optimizer and "
            f"step count fresh), run with init_from_ptl_ckpt={requested} and no resume",
        )
    if not os.path.isfile(os.path.join(path, STATE_FILE)):
        raise ConfigError(
            "resume", requested, f"null, last, or a run folder of this project (no {STATE_FILE} in {path})"
        )
    return path


def _create_new_folder(experiment: str) -> RunFolder:
    os.makedirs(experiment, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    while True:
        # The version is also the W&B run id (exp_manager passes it): the suffix keeps it unique in a project.
        version = f"{stamp}_{secrets.token_hex(2)}"
        path = os.path.join(experiment, version)
        try:
            os.mkdir(path)  # atomic: a concurrent run never gets the same folder
        except FileExistsError:
            continue
        return RunFolder(path, version, resuming=False, owner=True)


def _lock_holder(folder: RunFolder) -> dict | None:
    """The live process holding the folder, or None (no lock, or a stale one)."""
    holder = _read_json(os.path.join(folder.path, LOCK_FILE))
    if not holder:
        return None
    if holder.get("slurm_job") and holder.get("slurm_job") == _slurm_version():
        return None  # an earlier attempt of this very job (a requeue): it has ended
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return None  # the holder died (kill -9, crash): stale
        except PermissionError:
            pass
        if int(holder["pid"]) == os.getpid():
            return None
    return holder


def _take_lock(folder: RunFolder) -> None:
    holder = _lock_holder(folder)
    if holder is not None:
        raise ConfigError(
            "resume",
            folder.path,
            f"a run folder no process is using; it is held by pid {holder.get('pid')} on {holder.get('host')} "
            f"since {holder.get('started')} (remove {os.path.join(folder.path, LOCK_FILE)} if that process is gone)",
        )
    _write_json_atomically(
        os.path.join(folder.path, LOCK_FILE),
        {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "slurm_job": _slurm_version(),
        },
    )


def _kept_from_the_run(folder: RunFolder) -> tuple[tuple[str, object], ...]:
    saved_config = os.path.join(folder.path, CONFIG_FILE)
    if not os.path.isfile(saved_config):
        return ()
    saved = OmegaConf.load(saved_config)
    return tuple((key, OmegaConf.select(saved, key, default=None)) for key in DERIVED_FROM_THE_JOB)


def _comparable(cfg: DictConfig) -> dict:
    container = OmegaConf.to_container(cfg, resolve=True)
    for dotted in MAY_CHANGE_ON_RESUME + DERIVED_FROM_THE_JOB:
        *parents, leaf = dotted.split(".")
        node = container
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(leaf, None)
    return container


def _differences(old, new, prefix="") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for key in sorted(set(old) | set(new), key=str):
            found += _differences(old.get(key, "<absent>"), new.get(key, "<absent>"), f"{prefix}{key}.")
        return found
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def _check_resumable(folder: RunFolder, cfg: DictConfig, stage: str, trains: bool) -> None:
    """`trains`: a finished run of a training stage can be continued with a larger trainer.max_steps."""
    state = folder.read_state()
    if state.get("stage") not in (None, stage):
        raise ConfigError("resume", folder.path, f"a run folder of stage {stage} (this one is {state['stage']})")
    saved_config = os.path.join(folder.path, CONFIG_FILE)
    if os.path.isfile(saved_config):
        before = _comparable(OmegaConf.load(saved_config))
        changed = _differences(before, _comparable(cfg))
        if changed:
            shown = "; ".join(changed[:3]) + (f"; and {len(changed) - 3} more" if len(changed) > 3 else "")
            raise ConfigError(
                "resume",
                folder.path,
                f"a run with the same config (only {', '.join(MAY_CHANGE_ON_RESUME)} may change; the W&B group "
                "derived from a SLURM job is kept from the run); "
                f"changed: {shown}. Start a new run without resume=",
            )
    if state.get("status") == FINISHED:
        step = state.get("global_step")
        max_steps = OmegaConf.select(cfg, "trainer.max_steps", default=-1) or -1
        extends_training = trains and step is not None and max_steps > step
        if not extends_training:
            raise ConfigError(
                "resume",
                folder.path,
                f"an unfinished run; this one finished (at step {step}). Raise trainer.max_steps above {step} to "
                "train it further, or drop resume= to start a new run",
            )


def _describe(folder: RunFolder, cfg: DictConfig, stage: str) -> None:
    if not folder.resuming or not os.path.isfile(os.path.join(folder.path, CONFIG_FILE)):
        # Atomic: other ranks of a SLURM job may read it at the same moment.
        temporary = os.path.join(folder.path, f"{CONFIG_FILE}.{os.getpid()}.tmp")
        with open(temporary, "w") as f:
            f.write(OmegaConf.to_yaml(cfg, resolve=True))
        os.replace(temporary, os.path.join(folder.path, CONFIG_FILE))
    attempts = int(read_state(folder.path).get("attempts", 0)) + 1
    folder.write_state(stage=stage, status=RUNNING, attempts=attempts, host=socket.gethostname(), pid=os.getpid())
