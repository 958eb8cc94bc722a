"""Parsing of the `whisper.dtype` config value and resolution of `auto` to the checkpoint's own dtype."""

from __future__ import annotations

import json
import os

import torch

from nemo_ext.errors import ConfigError

AUTO = "auto"

# Spelling accepted in configs -> canonical name. Canonical names are torch attribute names.
_ALIASES = {
    "auto": AUTO,
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
ALLOWED_DTYPES = ("auto", "float16", "fp16", "bfloat16", "bf16", "float32", "fp32")


def parse_whisper_dtype(value: object, key: str = "whisper.dtype") -> str:
    """Return the canonical dtype name ('auto', 'float16', 'bfloat16' or 'float32') for a config value."""
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    if not isinstance(value, str) or value.strip().lower() not in _ALIASES:
        raise ConfigError(key, value, ", ".join(ALLOWED_DTYPES))
    return _ALIASES[value.strip().lower()]


def to_torch_dtype(canonical: str) -> torch.dtype:
    """torch dtype for a canonical name other than 'auto'."""
    if canonical == AUTO:
        raise ValueError("'auto' has no torch dtype of its own; resolve it with checkpoint_dtype() first")
    return getattr(torch, canonical)


def checkpoint_dtype(pretrained: str) -> torch.dtype | None:
    """The dtype a local Hugging Face checkpoint declares in its config.json (`dtype`, or the older
    `torch_dtype`); None when the checkpoint is not a local directory or declares none."""
    config_path = os.path.join(pretrained, "config.json")
    if not os.path.isfile(config_path):
        return None
    with open(config_path) as f:
        declared = json.load(f)
    name = declared.get("dtype") or declared.get("torch_dtype")
    if not isinstance(name, str) or not hasattr(torch, name):
        return None
    return getattr(torch, name)


def from_pretrained_dtype_arg(canonical: str) -> str | torch.dtype:
    """The `dtype=` argument for `from_pretrained`: 'auto' passes through (transformers then keeps the
    checkpoint's dtype, fp16 for whisper-large-v3), anything else is an explicit torch dtype."""
    return AUTO if canonical == AUTO else to_torch_dtype(canonical)
