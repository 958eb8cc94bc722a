"""`telemetry`: memory, step anatomy and learning-health figures (docs/telemetry.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from nemo_ext.settings import fields as check

LEARNING_KEYS = ("no_signal_warning_steps",)


@dataclass(frozen=True)
class TelemetrySettings:
    enabled: bool = True
    log_every_n_steps: int = 1
    oom_snapshot: bool = False
    # Logged steps at the start of each attempt left out of the step summary and picture (one-time costs).
    warmup_steps: int = 1
    # Consecutive logged steps on which every group's rewards were equal before "no learning signal" is warned.
    no_signal_warning_steps: int = 10

    @classmethod
    def parse(cls, node: Mapping | None, learns: bool = True) -> TelemetrySettings:
        """`learns`: the stage trains (its learning-health keys apply); DataGen's block has none."""
        raw = check.mapping("telemetry", node)
        known = [f.name for f in fields(cls) if learns or f.name not in LEARNING_KEYS]
        check.refuse_unknown_keys(raw, known, "telemetry.", "of the telemetry block")
        defaults = cls()
        return cls(
            enabled=check.boolean("telemetry.enabled", raw.get("enabled", defaults.enabled)),
            log_every_n_steps=check.integer(
                "telemetry.log_every_n_steps", raw.get("log_every_n_steps", defaults.log_every_n_steps), minimum=1
            ),
            oom_snapshot=check.boolean("telemetry.oom_snapshot", raw.get("oom_snapshot", defaults.oom_snapshot)),
            warmup_steps=check.integer(
                "telemetry.warmup_steps", raw.get("warmup_steps", defaults.warmup_steps), minimum=0
            ),
            no_signal_warning_steps=check.integer(
                "telemetry.no_signal_warning_steps",
                raw.get("no_signal_warning_steps", defaults.no_signal_warning_steps),
                minimum=1,
            ),
        )
