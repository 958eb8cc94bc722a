"""`exp_manager`: checked by the structured merge NeMo's own exp_manager() does (against NeMo's ExpManagerConfig,
pinned in nemo_exp_manager.py), plus the keys the recipe owns and the ranges that matter."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check
from nemo_ext.settings.nemo_exp_manager import ExpManagerConfig

# The recipe names run folders itself (recipes/run_folder.py): resuming is `resume=`.
SET_BY_THE_RECIPE = ("version", "use_datetime_version", "resume_if_exists", "resume_from_checkpoint")


def _schema_node(path: list[str]):
    node = OmegaConf.structured(ExpManagerConfig)
    for part in path:
        node = node[part]
    return node


def _merge_error(error: OmegaConfBaseException, raw: Mapping) -> ConfigError:
    key = str(getattr(error, "full_key", "") or getattr(error, "key", "") or "")
    path = [part for part in key.split(".") if part]
    value = raw
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    full = ".".join(["exp_manager", *path])
    if isinstance(error, ConfigKeyError):
        parent = _schema_node(path[:-1])
        known = list(parent.keys())
        owner = "NeMo's ExpManagerConfig" + (f" ({'.'.join(path[:-1])})" if len(path) > 1 else "")
        return ConfigError(full, value, f"a key of {owner}: {', '.join(known)}{check.did_you_mean(path[-1], known)}")
    return ConfigError(full, value, f"a value of type {_declared_type(path)} (NeMo's ExpManagerConfig)")


def _declared_type(path: list[str]) -> str:
    """The annotation of the field at `path` in the pinned dataclasses, as NeMo spells it."""
    cls, annotation = ExpManagerConfig, None
    for part in path:
        annotation = typing.get_type_hints(cls).get(part)
        nested = [a for a in typing.get_args(annotation) or (annotation,) if dataclasses.is_dataclass(a)]
        cls = nested[0] if nested else None
        if cls is None:
            break
    text = str(annotation).replace("typing.", "")
    return text if annotation is not None and "[" in text else getattr(annotation, "__name__", text)


@dataclass(frozen=True)
class ExpManagerSettings:
    node: Mapping  # the user's block as given (NeMo's exp_manager merges it with its defaults itself)
    every_n_train_steps: int | None

    @classmethod
    def parse(cls, node: Mapping | None) -> ExpManagerSettings:
        raw = check.mapping("exp_manager", node)
        for key in SET_BY_THE_RECIPE:
            if raw.get(key) not in (None, False):
                raise ConfigError(
                    f"exp_manager.{key}", raw[key], "unset: the recipe names run folders; continue one with resume="
                )
        try:
            merged = OmegaConf.merge(OmegaConf.structured(ExpManagerConfig), raw)
        except (ConfigKeyError, ValidationError, OmegaConfBaseException) as error:
            raise _merge_error(error, raw) from None
        params = merged.checkpoint_callback_params
        steps = check.integer(
            "exp_manager.checkpoint_callback_params.every_n_train_steps",
            params.every_n_train_steps,
            minimum=1,
            none=True,
        )
        check.integer(
            "exp_manager.checkpoint_callback_params.every_n_epochs", params.every_n_epochs, minimum=1, none=True
        )
        check.integer("exp_manager.checkpoint_callback_params.save_top_k", params.save_top_k, minimum=-1)
        check.choice("exp_manager.checkpoint_callback_params.mode", params.mode, ("min", "max"))
        return cls(node=raw, every_n_train_steps=steps)
