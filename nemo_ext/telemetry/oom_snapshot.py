"""Out-of-memory forensics (`telemetry.oom_snapshot: true`): CUDA memory history is recorded during the run; on a
CUDA out-of-memory error the rank writes a snapshot to <log_dir>/memory/oom_rank<R>.pickle (drag it into
https://pytorch.org/memory_viz), prints its path and the phase it was in, and the error goes on."""

from __future__ import annotations

import pickle

import torch

HISTORY_ENTRIES = 100_000  # allocation events kept (PyTorch's own suggestion for a snapshot)


def start_recording() -> bool:
    """Record CUDA allocation history; False where there is no CUDA device (nothing is recorded)."""
    if not torch.cuda.is_available():
        return False
    torch.cuda.memory._record_memory_history(max_entries=HISTORY_ENTRIES)
    return True


def stop_recording() -> None:
    if torch.cuda.is_available():
        torch.cuda.memory._record_memory_history(enabled=None)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "CUDA out of memory" in str(error)
    )


def write_snapshot(path: str, recording: bool) -> str:
    """The recorded snapshot, or, where nothing was recorded (no CUDA device), an empty one of the same shape
    (the visualizer opens it), so the report always names a file."""
    if recording:
        torch.cuda.memory._dump_snapshot(path)
    else:
        with open(path, "wb") as f:
            pickle.dump({"segments": [], "device_traces": [], "note": "no CUDA memory history was recorded"}, f)
    return path
