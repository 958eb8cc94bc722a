"""Helpers shared by the tests: the real configs, real subprocesses, RunIf-style gates.
(Named so it cannot clash with a site-packages `tests` package.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
PRIMARY_CONFIGS = sorted(p.stem for p in CONF_DIR.glob("*.yaml"))


# The published MagpieTTS checkpoint's randomness in training (NVIDIA-NeMo/Speech magpietts.yaml: p_dropout 0.1 in
# every transformer, cfg_unconditional_prob 0.1), over the tiny fixtures' zeros. Tiny stochasticity hides bugs.
PUBLISHED_STOCHASTICITY = (
    "+model.encoder.p_dropout=0.1",
    "+model.context_encoder.p_dropout=0.1",
    "+model.decoder.p_dropout=0.1",
    "+model.cfg_unconditional_prob=0.1",
)


def compose(config_name: str, overrides: list[str] | None = None):
    """Compose a real config from conf/ exactly as the recipe's Hydra entry point would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=overrides or [])


def run_recipe(
    script: str, *args: str, cwd, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run a recipe entry point as a user would: a real subprocess. Hydra writes its outputs/ under cwd, so
    tests pass a temporary folder."""
    return subprocess.run(
        [sys.executable, str(REPO / "recipes" / script), *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_script(path: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run a repo script (relative to the repo root) in a real subprocess."""
    return subprocess.run(
        [sys.executable, str(REPO / path), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def start_recipe(script: str, *args: str, env: dict, cwd, log_path) -> subprocess.Popen:
    """Start a recipe process without waiting (several ranks at once); output goes to log_path."""
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, str(REPO / "recipes" / script), *args],
        cwd=cwd,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    process.log_path = log_path  # a wait that times out shows what the process wrote
    return process


def slurm_env(rank: int, world: int, port: int) -> dict:
    """What srun sets for task `rank` of a job of `world` nodes x 1 task."""
    return {
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "magpie-test",
        "SLURM_NTASKS": str(world),
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_NNODES": str(world),
        "SLURM_JOB_NUM_NODES": str(world),
        "SLURM_PROCID": str(rank),
        "SLURM_NODEID": str(rank),
        "SLURM_LOCALID": "0",
        "SLURM_NODELIST": "localhost",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_jsonl(path) -> list[dict]:
    import json

    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- RunIf-style gates ----
def _have_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not _have_cuda(), reason="needs a CUDA device")
# Debian installs the daemons in /usr/sbin, which a stock PATH (env -i PATH=/usr/bin:/bin) lacks: conftest.py puts
# these folders on the session's PATH, so the gate, the cluster and its jobs find what is installed.
SYSTEM_BIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")
SLURM_TOOLS = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "scontrol")


def path_with_system_bin(path: str) -> str:
    present = path.split(os.pathsep) if path else []
    return os.pathsep.join(present + [d for d in SYSTEM_BIN_DIRS if d not in present])


def _slurm_missing() -> str | None:
    missing = [tool for tool in SLURM_TOOLS if not shutil.which(tool, path=path_with_system_bin(os.environ["PATH"]))]
    if missing:
        return f"needs Debian's slurm-wlm and munge (bash .ci/run installs them); not found: {', '.join(missing)}"
    if os.geteuid() != 0:
        return "needs root to start slurmctld, slurmd and munged"
    return None


requires_slurm = pytest.mark.skipif(_slurm_missing() is not None, reason=_slurm_missing() or "")


def assert_wandb_reduces_rank_files(exp_dir, memory_dir, ranks: int) -> None:
    """The W&B run's max / _min / _mean of each memory figure equal the max, min and mean of the ranks' own
    files, row by row, and the ranks' figures differ somewhere (or the reduction would go untested)."""
    import pytest

    from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

    per_rank = {r: read_jsonl(os.path.join(memory_dir, f"rank{r}.jsonl")) for r in range(ranks)}
    rows = [
        row for f in find_offline_runs(str(exp_dir)) for row in read_offline_run(f).history if "cpu/rss_gb_min" in row
    ]
    assert len(rows) == len(per_rank[0]) > 1
    differing = 0
    for index, row in enumerate(rows):
        local = [per_rank[r][index] for r in range(ranks)]
        assert {entry["rank"] for entry in local} == set(range(ranks))
        for key in ("cpu/rss_gb", "cpu/peak_rss_gb"):
            values = [entry[key] for entry in local]
            assert row[key] == pytest.approx(max(values), rel=1e-12)
            assert row[f"{key}_min"] == pytest.approx(min(values), rel=1e-12)
            assert row[f"{key}_mean"] == pytest.approx(sum(values) / ranks, rel=1e-12)
            differing += len(set(values)) > 1
    assert differing > 0, "ranks reported identical figures: the reduction would be untested"


def stage_configs(stage, cfg, test_manifest: str | None = None):
    """(the validated config, writable; the model config) of `stage`, as its recipe builds them: for the parity
    harness, which builds NeMo's classes and ours from the same two."""
    from nemo_ext.recipes.model_config import stage_model_config, writable_config

    settings = stage.parse(cfg)
    return writable_config(settings), stage_model_config(settings, test_manifest)
