"""`model.whisper` (and the `+whisper.*` command-line shortcut): which Whisper checkpoint is the reward / CER model,
and in which dtype it is loaded."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check

DEFAULT_WHISPER = "openai/whisper-large-v3"
AUTO = "auto"
# Spelling accepted in configs -> canonical name. Canonical names are torch attribute names.
DTYPE_ALIASES = {
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
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")


def parse_whisper_dtype(value: object, key: str = "whisper.dtype") -> str:
    """The canonical dtype name ('auto', 'float16', 'bfloat16' or 'float32') for a config value."""
    if not isinstance(value, str) or value.strip().lower() not in DTYPE_ALIASES:
        raise ConfigError(key, value, ", ".join(ALLOWED_DTYPES))
    return DTYPE_ALIASES[value.strip().lower()]


@dataclass(frozen=True)
class WhisperSettings:
    """`model.whisper`: which Whisper checkpoint serves as reward / CER model, and in what dtype."""

    pretrained: str = DEFAULT_WHISPER  # hub name or local directory
    dtype: str = AUTO  # canonical: auto | float16 | bfloat16 | float32
    batch_size: int | None = None  # None: all clips of a step in one generate() call
    attn_implementation: str = "sdpa"

    @classmethod
    def parse(cls, node: Mapping | None, key: str = "model.whisper") -> WhisperSettings:
        raw = check.mapping(key, node)
        check.refuse_unknown_keys(raw, [f.name for f in fields(cls)], f"{key}.", "of the whisper block")
        pretrained = check.text(
            f"{key}.pretrained", raw.get("pretrained", DEFAULT_WHISPER), "a hub model name or a local directory"
        )
        # A path (not a hub name like openai/whisper-large-v3) must exist: fail now, not at the hub lookup.
        if pretrained.startswith(("/", "./", "../", "~")) and not os.path.isdir(os.path.expanduser(pretrained)):
            raise ConfigError(f"{key}.pretrained", pretrained, "a hub model name or an existing local directory")
        return cls(
            pretrained=pretrained,
            dtype=parse_whisper_dtype(raw.get("dtype", AUTO), key=f"{key}.dtype"),
            batch_size=check.integer(f"{key}.batch_size", raw.get("batch_size"), minimum=1, none=True),
            attn_implementation=check.choice(
                f"{key}.attn_implementation", raw.get("attn_implementation", "sdpa"), ATTENTION_IMPLEMENTATIONS
            ),
        )


def fold_whisper_shortcut(container: dict) -> dict:
    """Move a top-level `whisper` node (from `+whisper.dtype=bf16` on the command line) into `model.whisper`.

    Hydra's `+` only adds a key that is absent from the composed config, and `model.whisper.dtype` is always
    present, so `+whisper.dtype=...` lands at the top level. Its values win over `model.whisper`. Works on the
    resolved plain container; errors name the key the user typed."""
    shortcut = container.pop("whisper", None)
    if shortcut is None:
        return container
    if not isinstance(shortcut, Mapping):
        raise ConfigError("whisper", shortcut, "a mapping such as +whisper.dtype=fp16")
    WhisperSettings.parse(shortcut, key="whisper")
    model = container.setdefault("model", {})
    if not isinstance(model, dict):
        return container  # the model block's own check names the problem
    model["whisper"] = {**(model.get("whisper") or {}), **shortcut}
    return container
