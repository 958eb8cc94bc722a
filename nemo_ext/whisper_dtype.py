"""Resolving a `whisper.dtype` setting (parsed in nemo_ext/settings/whisper.py) to torch: the checkpoint's own
dtype for `auto`, and the `dtype=` argument of `from_pretrained`."""

from __future__ import annotations

import json
import os

import torch

from nemo_ext.settings import whisper as whisper_settings
from nemo_ext.settings.whisper import ALLOWED_DTYPES, AUTO

__all__ = [
    "ALLOWED_DTYPES",
    "AUTO",
    "checkpoint_dtype",
    "from_pretrained_dtype_arg",
    "parse_whisper_dtype",
    "to_torch_dtype",
]


def parse_whisper_dtype(value: object, key: str = "whisper.dtype", allow_int8: bool = False) -> str:
    """The canonical dtype name for a config value or, from code, a torch dtype (`int8`: CTranslate2 only)."""
    if isinstance(value, torch.dtype):
        value = str(value).removeprefix("torch.")
    return whisper_settings.parse_whisper_dtype(value, key, allow_int8=allow_int8)


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
