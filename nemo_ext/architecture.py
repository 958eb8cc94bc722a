"""The MagpieTTS (or EasyMagpieTTS) architecture a stage builds its model from: a YAML file (`model_architecture`)
or the init checkpoint's `hyper_parameters.cfg`."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from nemo_ext.errors import ConfigError

# Keys under which architectures carry datasets; a stage rebuilds them from `data`.
DATASET_KEYS = ("train_ds", "validation_ds", "test_ds")


def load_architecture(run) -> DictConfig:
    """The `model` node of the architecture, without datasets. `run`: the stage's RunSettings."""
    if run.model_architecture:
        loaded = OmegaConf.load(run.model_architecture)
        architecture = loaded.model if "model" in loaded else loaded
    else:
        import torch

        from nemo_ext.checkpoints import configs_in_checkpoints_allowed

        with configs_in_checkpoints_allowed():
            checkpoint = torch.load(run.init_from_ptl_ckpt, map_location="cpu", mmap=True)
        hyper = checkpoint.get("hyper_parameters") or {}
        if "cfg" not in hyper:
            raise ConfigError(
                "model_architecture",
                None,
                f"a YAML with the model architecture ({run.init_from_ptl_ckpt} has no hyper_parameters.cfg)",
            )
        architecture = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(hyper["cfg"])))
    with open_dict(architecture):
        for key in DATASET_KEYS:
            architecture.pop(key, None)
    return architecture
