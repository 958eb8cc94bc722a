"""The pair stage's typed settings: which DataGen run, where the pairs go, the selection's thresholds, W&B."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from nemo_ext.errors import ConfigError
from nemo_ext.pairs import PairSettings
from nemo_ext.settings import fields as check

WANDB_KEYS = ("enabled", "project", "name", "offline", "save_dir")


@dataclass(frozen=True)
class PairWandbSettings:
    enabled: bool = False
    project: str = "magpie-po"
    name: str = "offline_po_pairs"
    offline: bool = False
    save_dir: str | None = None


@dataclass(frozen=True)
class PairStageSettings:
    datagen_run: str  # absolute
    output_dir: str | None
    use_codes: bool
    pairs: PairSettings
    wandb: PairWandbSettings

    @classmethod
    def parse(cls, raw: Mapping) -> PairStageSettings:
        datagen_run = raw.get("datagen_run")
        if not isinstance(datagen_run, str) or datagen_run in ("", check.MISSING) or not os.path.isdir(datagen_run):
            raise ConfigError(
                "datagen_run", datagen_run, "an existing DataGen run folder (its path is printed by DataGen)"
            )
        return cls(
            datagen_run=os.path.abspath(datagen_run),
            output_dir=check.text("output_dir", raw.get("output_dir"), "a folder", none=True),
            use_codes=check.boolean("use_codes", raw.get("use_codes", True)),
            pairs=parse_pair_settings(raw.get("pairs")),
            wandb=_wandb(raw.get("wandb")),
        )


def _wandb(node) -> PairWandbSettings:
    raw = check.mapping("wandb", node)
    check.refuse_unknown_keys(raw, WANDB_KEYS, "wandb.", "of the pair stage's wandb block")
    defaults = PairWandbSettings()
    return PairWandbSettings(
        enabled=check.boolean("wandb.enabled", raw.get("enabled", defaults.enabled)),
        project=check.text("wandb.project", raw.get("project", defaults.project)),
        name=check.text("wandb.name", raw.get("name", defaults.name)),
        offline=check.boolean("wandb.offline", raw.get("offline", defaults.offline)),
        save_dir=check.text("wandb.save_dir", raw.get("save_dir"), "a folder", none=True),
    )


def parse_pair_settings(node) -> PairSettings:
    """`pairs`: every value checked (key, value, what is allowed)."""
    raw = check.mapping("pairs", node)
    known = [f.name for f in fields(PairSettings)]
    check.refuse_unknown_keys(raw, known, "pairs.", "of the pairs block")
    defaults = PairSettings()
    group_size = check.integer("pairs.group_size", raw.get("group_size", defaults.group_size), minimum=2)
    chosen = raw.get("chosen_per_group", defaults.chosen_per_group)
    if chosen not in (1, 2) or isinstance(chosen, bool):
        raise ConfigError("pairs.chosen_per_group", chosen, "1 (best vs worst) or 2 (top-2 x bottom-2)")
    if group_size < 2 * chosen:
        raise ConfigError("pairs.group_size", group_size, f">= {2 * chosen} for chosen_per_group={chosen}")
    low = check.number("pairs.min_duration", raw.get("min_duration", defaults.min_duration), minimum=0)
    high = check.number("pairs.max_duration", raw.get("max_duration", defaults.max_duration), minimum=0)
    if low > high:
        raise ConfigError("pairs.max_duration", high, f">= pairs.min_duration ({low:g})")
    return PairSettings(
        group_size=group_size,
        chosen_per_group=chosen,
        cer_threshold=check.number("pairs.cer_threshold", raw.get("cer_threshold", defaults.cer_threshold), minimum=0),
        min_duration=low,
        max_duration=high,
        val_pairs=check.integer("pairs.val_pairs", raw.get("val_pairs", defaults.val_pairs), minimum=0),
        seed=check.integer("pairs.seed", raw.get("seed", defaults.seed), minimum=0),
    )
