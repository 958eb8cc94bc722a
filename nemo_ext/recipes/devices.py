"""How many processes a `trainer` config starts, for every `devices` spelling Lightning accepts, decided before the
Trainer exists (the strategy must be chosen up front)."""

from __future__ import annotations

from nemo_ext.errors import ConfigError

_GPU_ACCELERATORS = ("gpu", "cuda")
_DEVICE_SPELLINGS = "an int > 0, -1 (all GPUs), 'auto', a digit string, a GPU id list such as '0,1' or [0, 1]"


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def devices_per_node(devices, accelerator: str = "auto", gpus: int | None = None) -> int:
    """Lightning's reading of `trainer.devices`: `auto` is every GPU (1 on a CPU), -1 / "-1" every GPU, "0,1" and
    [0, 1] GPU ids, "3" and 3 a count. `gpus`: GPUs visible here (detected when None)."""
    gpus = visible_gpus() if gpus is None else gpus
    on_gpu = accelerator in _GPU_ACCELERATORS or (accelerator == "auto" and gpus > 0)
    if isinstance(devices, bool):
        raise ConfigError("trainer.devices", devices, _DEVICE_SPELLINGS)
    if devices is None or devices == "auto":
        return max(gpus, 1) if on_gpu else 1
    if isinstance(devices, list | tuple):
        count = len(devices)
    elif isinstance(devices, int):
        count = gpus if devices == -1 and on_gpu else devices
    elif isinstance(devices, str):
        text = devices.strip()
        if text == "-1" and on_gpu:
            count = gpus
        elif "," in text:
            count = len([part for part in text.split(",") if part.strip()])
        elif text.isdigit():
            count = int(text)
        else:
            raise ConfigError("trainer.devices", devices, _DEVICE_SPELLINGS)
    else:
        raise ConfigError("trainer.devices", devices, _DEVICE_SPELLINGS)
    if count < 1:
        raise ConfigError("trainer.devices", devices, _DEVICE_SPELLINGS + " (on the CPU: an int > 0)")
    return count


def world_size(trainer_kwargs: dict, gpus: int | None = None) -> int:
    nodes = int(trainer_kwargs.get("num_nodes", 1) or 1)
    return nodes * devices_per_node(
        trainer_kwargs.get("devices", "auto"), str(trainer_kwargs.get("accelerator", "auto")), gpus
    )
