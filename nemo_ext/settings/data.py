"""`data`: the manifests a stage reads and how they are batched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check

# The manifest keys each kind of stage reads (training stages: train + validation; generation: test).
TRAINING_MANIFESTS = ("train_manifest", "val_manifest")
GENERATION_MANIFESTS = ("test_manifest",)
_COMMON_KEYS = ("audio_dir", "batch_size", "num_workers", "pin_memory", "min_duration", "max_duration")


@dataclass(frozen=True)
class DataSettings:
    manifests: Mapping[str, str]  # key under `data` -> path (absent ones are "???")
    audio_dir: str
    batch_size: int
    num_workers: int
    pin_memory: bool
    min_duration: float | None
    max_duration: float | None

    def manifest(self, key: str) -> str:
        return self.manifests[key]

    @classmethod
    def parse(cls, node: Mapping | None, manifest_keys: tuple[str, ...]) -> DataSettings:
        raw = check.mapping("data", node)
        check.refuse_unknown_keys(raw, manifest_keys + _COMMON_KEYS, "data.", "of the data block")
        manifests = {}
        for key in manifest_keys:
            value = raw.get(key, check.MISSING)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"data.{key}", value, "a path to a manifest file")
            manifests[key] = value
        low = check.number("data.min_duration", raw.get("min_duration"), minimum=0, none=True)
        high = check.number("data.max_duration", raw.get("max_duration"), minimum=0, none=True)
        if low is not None and high is not None and low > high:
            raise ConfigError("data.max_duration", high, f"a number >= data.min_duration ({low:g})")
        return cls(
            manifests=manifests,
            audio_dir=check.text("data.audio_dir", raw.get("audio_dir", "/"), "a directory (/ for absolute paths)"),
            batch_size=check.integer("data.batch_size", raw.get("batch_size"), minimum=1),
            num_workers=check.integer("data.num_workers", raw.get("num_workers", 0), minimum=0),
            pin_memory=check.boolean("data.pin_memory", raw.get("pin_memory", False)),
            min_duration=low,
            max_duration=high,
        )
