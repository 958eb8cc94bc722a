"""Exact memory figures for a module, the process and its CUDA device. No figure is invented: what cannot be
measured (CUDA on a CPU-only process) is None, never 0."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModuleFootprint:
    param_bytes: int
    buffer_bytes: int
    param_count: int | None  # None: not known (a CTranslate2 model does not list its weights)
    dtypes: tuple[str, ...]  # of the parameters, sorted
    device: str

    @property
    def weights_bytes(self) -> int:
        return self.param_bytes + self.buffer_bytes

    @property
    def bytes_per_param(self) -> float:
        return self.param_bytes / self.param_count if self.param_count else float("nan")


def module_footprint(module: torch.nn.Module) -> ModuleFootprint:
    params = list(module.parameters())
    buffers = list(module.buffers())
    devices = sorted({str(t.device) for t in params + buffers}) or ["none"]
    return ModuleFootprint(
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        param_count=sum(p.numel() for p in params),
        dtypes=tuple(sorted({str(p.dtype).removeprefix("torch.") for p in params})),
        device=",".join(devices),
    )


@dataclass(frozen=True)
class CudaMemory:
    allocated: int
    reserved: int
    peak_allocated: int  # since the last torch.cuda.reset_peak_memory_stats


def cuda_memory(device: torch.device | None = None) -> CudaMemory | None:
    """Figures for the process's current CUDA device; None when the process has no CUDA device."""
    if not torch.cuda.is_available() or (device is not None and device.type != "cuda"):
        return None
    return CudaMemory(
        allocated=torch.cuda.memory_allocated(device),
        reserved=torch.cuda.memory_reserved(device),
        peak_allocated=torch.cuda.max_memory_allocated(device),
    )


def process_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return process_peak_rss_bytes()


def process_peak_rss_bytes() -> int:
    """Peak resident set size. The kernel's high-water mark lags the current RSS (it is updated on some page
    faults and at exits), so a peak read right after growth can be below the RSS: report the max of the two."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return peak
    return max(peak, current)
