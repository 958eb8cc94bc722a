"""`faults`: how a multi-rank run notices a hung rank (the collective timeout) and how each rank reports that it is
alive (its heartbeat file). docs/lifecycle.md says what happens next."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check


@dataclass(frozen=True)
class FaultSettings:
    # Seconds a collective waits for its peers before it fails (torch.distributed's process-group timeout).
    collective_timeout_s: float = 600.0
    # Seconds between two writes of a rank's heartbeat file.
    heartbeat_every_s: float = 10.0

    @classmethod
    def parse(cls, node: Mapping | None) -> FaultSettings:
        raw = check.mapping("faults", node)
        check.refuse_unknown_keys(raw, [f.name for f in fields(cls)], "faults.", "of the faults block")
        defaults = cls()
        timeout = check.number(
            "faults.collective_timeout_s", raw.get("collective_timeout_s", defaults.collective_timeout_s), minimum=1
        )
        heartbeat = check.number(
            "faults.heartbeat_every_s", raw.get("heartbeat_every_s", defaults.heartbeat_every_s), minimum=0.1
        )
        if heartbeat >= timeout:
            # A hang must be visible in the heartbeats before the collective gives up.
            raise ConfigError(
                "faults.heartbeat_every_s", heartbeat, f"a number below faults.collective_timeout_s ({timeout})"
            )
        return cls(collective_timeout_s=float(timeout), heartbeat_every_s=float(heartbeat))
