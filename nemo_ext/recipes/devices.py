"""How many processes a `trainer` config starts, for every `devices` spelling Lightning accepts, counted when the
trainer is built on the node that runs it (the strategy must be chosen before the Trainer exists). The spelling is
checked at the edge (nemo_ext/settings/trainer.py::devices_spelling)."""

from __future__ import annotations

from nemo_ext.errors import ConfigError
from nemo_ext.settings.trainer import DEVICE_SPELLINGS, devices_spelling

_GPU_ACCELERATORS = ("gpu", "cuda")


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def devices_per_node(devices, accelerator: str = "auto", gpus: int | None = None) -> int:
    """Lightning's reading of `trainer.devices`: `auto` is every GPU (1 on a CPU), -1 / "-1" every GPU, "0,1" and
    [0, 1] GPU ids, "3" and 3 a count. `gpus`: GPUs visible here (detected when None)."""
    devices = devices_spelling(devices)
    gpus = visible_gpus() if gpus is None else gpus
    on_gpu = accelerator in _GPU_ACCELERATORS or (accelerator == "auto" and gpus > 0)
    if devices is None or devices == "auto":
        return max(gpus, 1) if on_gpu else 1
    if devices in (-1, "-1"):
        if not on_gpu:
            raise ConfigError("trainer.devices", devices, DEVICE_SPELLINGS + " (on the CPU: an int > 0)")
        return gpus
    if isinstance(devices, list):
        return len(devices)
    if isinstance(devices, int):
        return devices
    text = devices.strip()
    return len([part for part in text.split(",") if part.strip()]) if "," in text else int(text)


def world_size(trainer_kwargs: dict, gpus: int | None = None) -> int:
    nodes = int(trainer_kwargs.get("num_nodes", 1) or 1)
    return nodes * devices_per_node(
        trainer_kwargs.get("devices", "auto"), str(trainer_kwargs.get("accelerator", "auto")), gpus
    )
