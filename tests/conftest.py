"""Shared fixtures: the real Hydra configs, composed and shrunk onto tiny models built locally.

Nothing here reaches the network: hub access is switched off and W&B runs offline."""

from __future__ import annotations

import os

import pytest

# Set before transformers / huggingface_hub / wandb are imported by any test module.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("WANDB_API_KEY", None)

from magpie_testing import compose, path_with_system_bin  # noqa: E402

os.environ["PATH"] = path_with_system_bin(os.environ.get("PATH", ""))  # the SLURM and munge daemons live in sbin


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """The embedded tiny default, built once per session (or reused from $MAGPIE_TEST_FIXTURES)."""
    from nemo_ext_tools.tiny_fixtures import build_tiny_fixtures

    root = os.environ.get("MAGPIE_TEST_FIXTURES") or str(tmp_path_factory.mktemp("tiny"))
    return build_tiny_fixtures(root)


@pytest.fixture
def tiny_config(tiny, tmp_path):
    """compose('<stage>_tiny', [...]) pointed at the session's fixtures and a per-test run dir."""

    def make(config_name: str, *overrides: str):
        return compose(config_name, [f"tiny_root={tiny.root}", f"exp_manager.exp_dir={tmp_path / 'runs'}", *overrides])

    return make


DISTRIBUTED_ENV = ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK")


@pytest.fixture(autouse=True)
def isolated_distributed_state():
    """An in-process DDP run leaves MASTER_PORT (still listening) in os.environ and a process group behind;
    later subprocesses would inherit the port and fail with EADDRINUSE."""
    saved = {key: os.environ.pop(key) for key in DISTRIBUTED_ENV if key in os.environ}
    yield
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for key in DISTRIBUTED_ENV:
        os.environ.pop(key, None)
    os.environ.update(saved)
