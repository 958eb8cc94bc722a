"""The run's own top-level keys (which checkpoint, whether to resume, the seed, a dry run), the required input
paths, the embedded tiny default's fixture folder, and the refusal of secrets anywhere in the config."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check

# The version of the tiny fixtures this code needs (nemo_ext_tools/tiny_fixtures.py builds them and writes it).
TINY_FIXTURES_VERSION = 5
TINY_FIXTURES_MARKER = "fixtures.json"


@dataclass(frozen=True)
class RunSettings:
    name: str
    dry_run: bool
    resume: str | None  # null, `last`, or a run folder
    seed: int | None  # null: not seeded (NeMo's behaviour)
    init_from_ptl_ckpt: str | None = None
    model_architecture: str | None = None
    codecmodel_path: str | None = None
    tiny_root: str | None = None

    @classmethod
    def parse(cls, raw: Mapping, loads_models: bool) -> RunSettings:
        settings = cls(
            name=check.text("name", raw.get("name"), "a run name"),
            dry_run=check.boolean("dry_run", raw.get("dry_run", False)),
            resume=check.text("resume", raw.get("resume"), "last or a run folder", none=True),
            seed=check.integer("seed", raw.get("seed"), minimum=0, none=True),
            tiny_root=check.text("tiny_root", raw.get("tiny_root"), "a folder of tiny fixtures", none=True),
        )
        if not loads_models:
            return settings
        return cls(
            **{
                **settings.__dict__,
                "init_from_ptl_ckpt": raw.get("init_from_ptl_ckpt"),
                "model_architecture": check.text(
                    "model_architecture", raw.get("model_architecture"), "a YAML file with the architecture", none=True
                ),
                "codecmodel_path": raw.get("codecmodel_path"),
            }
        )


def refuse_secrets(container: Mapping) -> None:
    """Hydra writes configs to disk and NeMo logs them: secrets belong in the environment."""

    def walk(node: Mapping, prefix: str) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if isinstance(value, Mapping):
                walk(value, f"{path}.")
            elif _looks_secret(str(key)) and value not in (None, ""):
                raise ConfigError(
                    path,
                    "<redacted>",
                    "null here; pass secrets as environment variables "
                    "(WANDB_API_KEY), never in a config that is written to disk",
                )

    walk(container, "")


def _looks_secret(key: str) -> bool:
    key = key.lower()
    return key in ("token", "key", "secret") or key.endswith(("api_key", "apikey", "_token", "password", "_secret"))


def built_fixtures_version(root: str) -> int | None:
    """The version the tiny fixtures under `root` were built with; None when none were built there."""
    try:
        with open(os.path.join(root, TINY_FIXTURES_MARKER)) as f:
            return json.load(f).get("version")
    except (OSError, ValueError):
        return None


def check_tiny_fixtures(root: str | None) -> None:
    """A *_tiny config names its fixture folder (`tiny_root`): missing or built by an older version, say how to
    build it instead of naming the first file it lacks."""
    if root is None:
        return
    built = built_fixtures_version(root)
    if built != TINY_FIXTURES_VERSION:
        state = "not built" if built is None else f"built by version {built}, this code needs {TINY_FIXTURES_VERSION}"
        raise ConfigError(
            "tiny_root", root, f"a folder of tiny fixtures ({state}): python scripts/make_tiny_fixtures.py --out {root}"
        )


def select(container: Mapping, dotted: str, default=None):
    node = container
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def require_existing_paths(container: Mapping, keys: Iterable[str]) -> None:
    """Fail fast (on the login node, before queueing or loading) when a required input path is missing."""
    for key in keys:
        value = select(container, key, check.MISSING)
        if value is None or value == check.MISSING:
            raise ConfigError(key, value, "a path to an existing file (this key is required)")
        if not os.path.exists(str(value)):
            raise ConfigError(key, value, "a path to an existing file (no such file or directory)")


def require_writable_folder(key: str, path: str) -> None:
    """`path` exists as a folder this process can write, or can be created: its nearest existing ancestor is a
    writable folder. A read-only file system, missing permission or a file in the way is one config error, before
    anything is built (NeMo and Hydra would fail later with a traceback)."""
    absolute = os.path.abspath(path)
    existing = absolute
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    if not os.path.isdir(existing):
        raise ConfigError(key, path, f"a folder that can be created ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(key, path, f"a folder this user can write ({existing} is read-only or not writable)")
