"""`model.whisper` (and the `+whisper.*` command-line shortcut): which Whisper checkpoint is the reward / CER model,
on which backend (transformers, or CTranslate2: nemo_ext/whisper_ct2.py), and in which dtype it is loaded."""

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
BACKENDS = ("transformers", "ctranslate2")
INT8 = "int8"  # CTranslate2 only: int8 weights (int8_float16 on a GPU)
INT8_NOTE = "int8 (with model.whisper.backend=ctranslate2)"


def parse_whisper_dtype(value: object, key: str = "whisper.dtype", allow_int8: bool = False) -> str:
    """The canonical dtype name ('auto', 'float16', 'bfloat16' or 'float32'; 'int8' when `allow_int8`) for a
    config value."""
    text = value.strip().lower() if isinstance(value, str) else None
    if allow_int8 and text == INT8:
        return INT8
    if text not in DTYPE_ALIASES:
        raise ConfigError(key, value, ", ".join((*ALLOWED_DTYPES, INT8_NOTE)))
    return DTYPE_ALIASES[text]


@dataclass(frozen=True)
class WhisperSettings:
    """`model.whisper`: which Whisper checkpoint serves as reward / CER model, on which backend, in what dtype."""

    pretrained: str = DEFAULT_WHISPER  # hub name or local directory (a CTranslate2 directory for ctranslate2)
    dtype: str = AUTO  # canonical: auto | float16 | bfloat16 | float32 | int8 (ctranslate2)
    batch_size: int | None = None  # None: all clips of a step in one generate() call
    attn_implementation: str = "sdpa"  # transformers only
    backend: str = "transformers"

    @property
    def on_ctranslate2(self) -> bool:
        return self.backend == "ctranslate2"

    @classmethod
    def parse(cls, node: Mapping | None, key: str = "model.whisper", whole: bool = True) -> WhisperSettings:
        """`whole`: the block is all there is (False for the `+whisper.*` shortcut, which only overrides some
        keys: the checks between keys wait for the merged block)."""
        raw = check.mapping(key, node)
        check.refuse_unknown_keys(raw, [f.name for f in fields(cls)], f"{key}.", "of the whisper block")
        pretrained = check.text(
            f"{key}.pretrained", raw.get("pretrained", DEFAULT_WHISPER), "a hub model name or a local directory"
        )
        # A path (not a hub name like openai/whisper-large-v3) must exist: fail now, not at the hub lookup.
        if pretrained.startswith(("/", "./", "../", "~")) and not os.path.isdir(os.path.expanduser(pretrained)):
            raise ConfigError(f"{key}.pretrained", pretrained, "a hub model name or an existing local directory")
        backend = check.choice(f"{key}.backend", raw.get("backend", "transformers"), BACKENDS)
        dtype = parse_whisper_dtype(raw.get("dtype", AUTO), key=f"{key}.dtype", allow_int8=True)
        settings = cls(
            pretrained=pretrained,
            dtype=dtype,
            batch_size=check.integer(f"{key}.batch_size", raw.get("batch_size"), minimum=1, none=True),
            attn_implementation=check.choice(
                f"{key}.attn_implementation", raw.get("attn_implementation", "sdpa"), ATTENTION_IMPLEMENTATIONS
            ),
            backend=backend,
        )
        if whole:
            settings._check_backend(key)
        return settings

    def _check_backend(self, key: str) -> None:
        if self.dtype == INT8 and not self.on_ctranslate2:
            raise ConfigError(f"{key}.dtype", INT8, f"{', '.join(ALLOWED_DTYPES)} on backend transformers; {INT8_NOTE}")
        if self.on_ctranslate2:
            # Loaded from a local directory only, checked now: not after the policy and the other rewards.
            check_ct2_directory(os.path.expanduser(self.pretrained), f"{key}.pretrained")


CT2_REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")


def check_ct2_directory(path: str, key: str = "model.whisper.pretrained") -> None:
    """A CTranslate2 Whisper directory holds model.bin, config.json and tokenizer.json; say which is missing and
    how to make one from a Hugging Face checkpoint."""
    missing = [name for name in CT2_REQUIRED_FILES if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise ConfigError(
            key,
            path,
            "a local CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json; missing: "
            f"{', '.join(missing)}); convert a Hugging Face checkpoint once with: ct2-transformers-converter "
            f"--model <checkpoint> --output_dir {path.rstrip('/')} "
            "--copy_files tokenizer.json preprocessor_config.json generation_config.json",
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
    WhisperSettings.parse(shortcut, key="whisper", whole=False)
    model = container.setdefault("model", {})
    if not isinstance(model, dict):
        return container  # the model block's own check names the problem
    model["whisper"] = {**(model.get("whisper") or {}), **shortcut}
    return container
