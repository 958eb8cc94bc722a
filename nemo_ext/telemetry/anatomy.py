"""Where a step's time and memory go: wall seconds and CUDA peak per named phase of a GRPO step / DataGen batch.

Phases nest (rollout generation contains the codec decode): a phase's seconds are its own, without the phases
inside it, so the phases and `other` add up to the step. A phase's CUDA peak includes what ran inside it. A phase
that runs several times in a step (audio I/O) accumulates its seconds and keeps its highest peak.

Disabled (telemetry off, the default) a phase is a bare `yield`: no CUDA synchronization, no peak-counter reset,
no clock read. Enabled on a GPU, the clock is read after `torch.cuda.synchronize()`, so a phase is charged for the
kernels it launched."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import torch

from nemo_ext.telemetry.phases import OTHER


@dataclass
class _Frame:
    name: str
    start: float
    children: float = 0.0


@dataclass
class StepFigures:
    """One step: seconds per phase (exclusive), CUDA peak bytes per phase (inclusive), the step's totals."""

    seconds: dict[str, float] = field(default_factory=dict)
    peaks: dict[str, int] = field(default_factory=dict)
    step_seconds: float | None = None
    step_peak: int | None = None


class StepAnatomy:
    """`phases`: the phases its model declares (telemetry/phases.py); timing another one is refused, so a phase can
    never be timed and subtracted from `other` without being logged."""

    def __init__(self, phases: tuple[str, ...], device: torch.device | None = None):
        if OTHER not in phases:
            raise ValueError(f"a step's phases end with {OTHER!r} (the rest of the step): {phases}")
        self.phases = tuple(phases)
        self.enabled = False
        self.device = device
        self.current = StepFigures()
        self._stack: list[_Frame] = []
        self._step_start: float | None = None
        self.failed_in: str | None = None

    def _cuda(self) -> bool:
        return (
            self.enabled
            and torch.cuda.is_available()
            and (self.device is None or torch.device(self.device).type == "cuda")
        )

    def _now(self) -> float:
        if self._cuda():
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    @property
    def phase_in_progress(self) -> str | None:
        """The phase an error came from (the innermost one it passed through), else the innermost one open."""
        return self.failed_in or (self._stack[-1].name if self._stack else None)

    def start_step(self) -> None:
        self.current = StepFigures()
        self._stack = []
        self.failed_in = None
        if not self.enabled:
            self._step_start = None
            return
        if self._cuda():
            torch.cuda.reset_peak_memory_stats(self.device)
            self.current.step_peak = 0
        self._step_start = self._now()

    @contextlib.contextmanager
    def phase(self, name: str):
        if not self.enabled or self._step_start is None:
            yield
            return
        self.begin(name)
        try:
            yield
        except BaseException:
            # The innermost phase an error passed through: where an out-of-memory error happened.
            self.failed_in = self.failed_in or name
            raise
        finally:
            self.end(name)

    def _declared(self, name: str) -> str:
        if name not in self.phases or name == OTHER:
            raise ValueError(f"phase {name!r} is not among the declared phases {self.phases[:-1]}")
        return name

    def begin(self, name: str) -> None:
        """Open phase `name` (for phases that start and end in different hooks, such as the backward pass)."""
        if not self.enabled or self._step_start is None:
            return
        self._declared(name)
        if self._cuda():  # the peak so far belongs to the step and to every enclosing phase; then count afresh
            self._credit_peak(torch.cuda.max_memory_allocated(self.device))
            torch.cuda.reset_peak_memory_stats(self.device)
        self._stack.append(_Frame(name, self._now()))

    def end(self, name: str) -> None:
        if not self.enabled or self._step_start is None:
            return
        if not self._stack or self._stack[-1].name != name:
            open_phases = [frame.name for frame in self._stack]
            raise RuntimeError(f"phase {name!r} ended while {open_phases} are open")
        finish = self._now()
        frame = self._stack.pop()
        elapsed = finish - frame.start
        seconds = self.current.seconds
        seconds[name] = seconds.get(name, 0.0) + elapsed - frame.children
        if self._stack:
            self._stack[-1].children += elapsed
        if self._cuda():
            peak = torch.cuda.max_memory_allocated(self.device)
            self.current.peaks[name] = max(self.current.peaks.get(name, 0), peak)
            self._credit_peak(peak)  # the enclosing phases' counter was reset when this one began

    def end_if_open(self, name: str) -> None:
        if self._stack and self._stack[-1].name == name:
            self.end(name)

    def _credit_peak(self, peak: int) -> None:
        self.current.step_peak = max(self.current.step_peak or 0, peak)
        for outer in self._stack:
            self.current.peaks[outer.name] = max(self.current.peaks.get(outer.name, 0), peak)

    def end_step(self) -> StepFigures:
        figures = self.current
        if self._step_start is None:
            return figures
        figures.step_seconds = self._now() - self._step_start
        figures.seconds[OTHER] = max(figures.step_seconds - sum(figures.seconds.values()), 0.0)
        if self._cuda():
            figures.step_peak = max(figures.step_peak or 0, torch.cuda.max_memory_allocated(self.device))
        self._step_start = None
        return figures

    def wrap(self, name: str, function):
        """`function`, run as phase `name`."""
        self._declared(name)

        def timed(*args, **kwargs):
            with self.phase(name):
                return function(*args, **kwargs)

        return timed
