"""`model.nemo_asr` and `model.speaker_verification`: the NeMo reward models, by hub name or local `.nemo` file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check

DEFAULT_NEMO_ASR = "nvidia/parakeet-ctc-0.6b"
DEFAULT_SPEAKER_VERIFICATION = "titanet_large"


@dataclass(frozen=True)
class NemoModelSettings:
    """A NeMo reward model named either by NGC/HF pretrained name or by a local `.nemo` path."""

    pretrained: str

    @property
    def is_local_file(self) -> bool:
        return self.pretrained.endswith(".nemo")

    @classmethod
    def parse(cls, node: Mapping | None, key: str, default: str) -> NemoModelSettings:
        raw = check.mapping(key, node)
        check.refuse_unknown_keys(raw, ["pretrained"], f"{key}.", "of a NeMo reward model block")
        value = check.text(
            f"{key}.pretrained", raw.get("pretrained", default), "a pretrained model name or a path to a .nemo file"
        )
        if value.endswith(".nemo") and not os.path.isfile(value):
            raise ConfigError(f"{key}.pretrained", value, "an existing .nemo file (no such file)")
        return cls(value)
