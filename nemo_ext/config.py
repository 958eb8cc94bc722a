"""Typed settings read from the Hydra config, and validation that runs before any model is built.

Logic here takes plain DictConfigs, so tests and other tools call it without Hydra."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, fields

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import MissingMandatoryValue

from nemo_ext.errors import ConfigError
from nemo_ext.whisper_dtype import parse_whisper_dtype

DEFAULT_WHISPER = "openai/whisper-large-v3"
# Values NeMo 3.0.0's PO models accept, checked before any model is built.
REWARD_ASR_MODELS = ("nemo", "whisper")
GRPO_LOSS_TYPES = ("grpo", "dr_grpo")
DPO_LOSS_TYPES = ("dpo", "ipo", "rpo", "rpo_sq")
# How the frozen reference policy runs its forward in a GRPO step (see nemo_ext/models/online_po.py):
# matched (ours): train mode, replaying the policy forward's random draws; eval: no dropout, never drops the
# context; train: NeMo 3.0.0 (train mode, its own random draws).
REFERENCE_POLICY_MODES = ("matched", "eval", "train")


@dataclass(frozen=True)
class WhisperSettings:
    """`model.whisper`: which Whisper checkpoint serves as reward / CER model, and in what dtype."""

    pretrained: str = DEFAULT_WHISPER  # hub name or local directory
    dtype: str = "auto"  # canonical: auto | float16 | bfloat16 | float32
    batch_size: int | None = None  # None: all clips of a step in one generate() call
    attn_implementation: str = "sdpa"

    @classmethod
    def from_config(cls, node: DictConfig | dict | None, key: str = "model.whisper") -> WhisperSettings:
        raw = (
            {}
            if node is None
            else dict(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node)
        )
        known = {f.name for f in fields(cls)}
        for name in raw:
            if name not in known:
                raise ConfigError(f"{key}.{name}", raw[name], f"keys {', '.join(sorted(known))}")
        pretrained = raw.get("pretrained", DEFAULT_WHISPER)
        if not isinstance(pretrained, str) or not pretrained:
            raise ConfigError(f"{key}.pretrained", pretrained, "a hub model name or a local directory")
        # A path (not a hub name like openai/whisper-large-v3) must exist: fail now, not at the hub lookup.
        if pretrained.startswith(("/", "./", "../", "~")) and not os.path.isdir(os.path.expanduser(pretrained)):
            raise ConfigError(f"{key}.pretrained", pretrained, "a hub model name or an existing local directory")
        batch_size = raw.get("batch_size")
        if batch_size is not None and (
            not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
        ):
            raise ConfigError(f"{key}.batch_size", batch_size, "null or a positive integer")
        attn = raw.get("attn_implementation", "sdpa")
        if attn not in ("sdpa", "eager", "flash_attention_2"):
            raise ConfigError(f"{key}.attn_implementation", attn, "sdpa, eager, flash_attention_2")
        return cls(
            pretrained=pretrained,
            dtype=parse_whisper_dtype(raw.get("dtype", "auto"), key=f"{key}.dtype"),
            batch_size=batch_size,
            attn_implementation=attn,
        )


@dataclass(frozen=True)
class NemoModelSettings:
    """A NeMo reward model named either by NGC/HF pretrained name or by a local `.nemo` path."""

    pretrained: str

    @property
    def is_local_file(self) -> bool:
        return self.pretrained.endswith(".nemo")

    @classmethod
    def from_config(cls, node: DictConfig | None, key: str, default: str) -> NemoModelSettings:
        value = default if node is None else node.get("pretrained", default)
        extra = [] if node is None else [k for k in node.keys() if k != "pretrained"]
        if extra:
            raise ConfigError(f"{key}.{extra[0]}", node[extra[0]], "keys pretrained")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}.pretrained", value, "a pretrained model name or a path to a .nemo file")
        if value.endswith(".nemo") and not os.path.isfile(value):
            raise ConfigError(f"{key}.pretrained", value, "an existing .nemo file (no such file)")
        return cls(value)


def require_choice(cfg: DictConfig, key: str, default: str, allowed: tuple[str, ...], prefix: str = "") -> None:
    """`cfg[key]` (dotted; `default` when absent) must be one of `allowed`. `prefix` names where `cfg` sits in
    the user's config (e.g. "model." when given the model node), so the error names the key the user sets."""
    value = OmegaConf.select(cfg, key, default=default)
    if value not in allowed:
        raise ConfigError(f"{prefix}{key}", value, ", ".join(allowed))


def fold_whisper_shortcut(cfg: DictConfig) -> DictConfig:
    """Move a top-level `whisper` node (from `+whisper.dtype=bf16` on the command line) into `model.whisper`.

    Hydra's `+` only adds a key that is absent from the composed config, and `model.whisper.dtype` is always
    present, so `+whisper.dtype=...` lands at the top level. Its values win over `model.whisper`."""
    shortcut = cfg.get("whisper")
    if shortcut is None:
        return cfg
    if not isinstance(shortcut, DictConfig):
        raise ConfigError("whisper", shortcut, "a mapping such as +whisper.dtype=fp16")
    WhisperSettings.from_config(shortcut, key="whisper")  # errors name the key the user typed
    with open_dict(cfg):
        if cfg.model.get("whisper") is None:
            cfg.model.whisper = {}
        cfg.model.whisper = OmegaConf.merge(cfg.model.whisper, shortcut)
        del cfg["whisper"]
    return cfg


def require_existing_paths(cfg: DictConfig, keys: Iterable[str]) -> None:
    """Fail fast (on the login node, before queueing or loading) when a required input path is missing."""
    for key in keys:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True)
        except MissingMandatoryValue:
            value = "???"
        if value is None or value == "???":
            raise ConfigError(key, value, "a path to an existing file (this key is required)")
        if not os.path.exists(str(value)):
            raise ConfigError(key, value, "a path to an existing file (no such file or directory)")


def check_data_settings(cfg: DictConfig) -> None:
    """`data.*` values that NeMo's dataloader would reject only after the models are built."""
    data = cfg.get("data") or {}
    batch_size = data.get("batch_size")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("data.batch_size", batch_size, "a positive integer")
    workers = data.get("num_workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError("data.num_workers", workers, "an integer >= 0")
    low, high = data.get("min_duration"), data.get("max_duration")
    for key, value in (("data.min_duration", low), ("data.max_duration", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ConfigError(key, value, "null or a number of seconds >= 0")
    if low is not None and high is not None and low > high:
        raise ConfigError("data.max_duration", high, f"a number >= data.min_duration ({low})")


# Lightning precisions that compute in half precision throughout. On a CPU, fp16 kernels are missing for much of
# the model; bf16 runs, except MagpieTTS's CTC alignment loss ("ctc_loss_cpu" not implemented for 'BFloat16').
# 16-mixed runs as bf16-mixed on a CPU (Lightning's own fallback).
FP16_TRUE = ("16-true", "16", "fp16-true", "half")
BF16_TRUE = ("bf16-true", "bf16")


def check_precision_runs_on_accelerator(cfg: DictConfig, model_cfg: DictConfig | None = None) -> None:
    """Refuse, before any model is built, a `trainer.precision` that fails on the chosen accelerator.
    `model_cfg`: the merged model config of a training stage (its alignment loss matters); None for DataGen."""
    trainer = cfg.get("trainer") or {}
    precision = str(trainer.get("precision", "32-true"))
    accelerator = str(trainer.get("accelerator", "auto"))
    import torch

    if not (accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())):
        return
    where = f"on the CPU (trainer.accelerator={accelerator}; no CUDA device here)"
    if precision in FP16_TRUE:
        raise ConfigError("trainer.precision", precision, f"32-true, bf16-mixed, 16-mixed or bf16-true {where}")
    alignment_loss = float((model_cfg or {}).get("alignment_loss_scale", 0.0) or 0.0)
    if precision in BF16_TRUE and alignment_loss > 0:
        raise ConfigError(
            "trainer.precision",
            precision,
            f"32-true, bf16-mixed or 16-mixed {where}: model.alignment_loss_scale={alignment_loss:g} (the CTC "
            "alignment loss has no bf16 CPU kernel); bf16-true needs +model.alignment_loss_scale=0.0",
        )
