"""The config a stage's model is built from: the architecture, the stage's `model` node over it, and the datasets
built from `data`."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict

from nemo_ext.architecture import load_architecture


def dataset_config(settings, manifest: str, shuffle: bool) -> dict:
    """One dataset node for the stage's NeMo dataset class, reading `manifest`."""
    data = settings.data
    return {
        settings.stage.dataset_node: {
            "_target_": settings.stage.dataset,
            "dataset_meta": {"data": {"manifest_path": manifest, "audio_dir": data.audio_dir}},
            "min_duration": data.min_duration,
            "max_duration": data.max_duration,
        },
        "dataloader_params": {
            "batch_size": data.batch_size,
            "num_workers": data.num_workers,
            "pin_memory": data.pin_memory,
            "drop_last": False,
            "shuffle": shuffle,
        },
    }


def training_datasets(settings) -> dict:
    return {
        "train_ds": dataset_config(settings, settings.data.manifest("train_manifest"), shuffle=True),
        "validation_ds": dataset_config(settings, settings.data.manifest("val_manifest"), shuffle=False),
    }


def build_model_config(settings, datasets: dict) -> DictConfig:
    """Architecture + the stage's `model` settings + `datasets` (+ the reference checkpoint where the stage has a
    reference policy)."""
    stage, config = settings.stage, settings.config
    model_node = OmegaConf.to_container(config.model, resolve=True)
    for key in stage.unused_model_keys:
        model_node.pop(key, None)
    model_cfg = OmegaConf.merge(load_architecture(settings.run), model_node)
    with open_dict(model_cfg):
        if model_node.get("optim") is not None:
            # The stage's optimizer replaces the checkpoint's whole: a merge would keep the checkpoint's training
            # scheduler (NeMo's MagpieTTS configs: ExponentialLR, gamma 0.998) under PO's optimizer. PO's default
            # is no scheduler (`model.optim.sched: null`); NeMo's setup_optimization needs the key absent then.
            model_cfg.optim = OmegaConf.create(model_node["optim"])
            if model_cfg.optim.get("sched") is None:
                model_cfg.optim.pop("sched", None)
        model_cfg.codecmodel_path = settings.run.codecmodel_path
        for key, value in datasets.items():
            model_cfg[key] = value
        if stage.reference_policy:
            # The frozen reference policy is the checkpoint the policy starts from (upstream's convention).
            model_cfg.reference_model_ckpt_path = settings.run.init_from_ptl_ckpt
    return model_cfg


def stage_model_config(settings, test_manifest: str | None = None) -> DictConfig:
    """The model config of a stage's loop: training datasets for a training stage; for DataGen a test dataset over
    `test_manifest` (default: data.test_manifest)."""
    from nemo_ext.stages.stage import Loop

    if settings.stage.loop is Loop.GENERATE:
        manifest = test_manifest or settings.data.manifest("test_manifest")
        return build_model_config(settings, {"test_ds": dataset_config(settings, manifest, shuffle=False)})
    return build_model_config(settings, training_datasets(settings))


def writable_config(settings) -> DictConfig:
    """A writable copy of the stage's validated config (NeMo's init pops keys from the config it is given)."""
    return OmegaConf.create(OmegaConf.to_container(settings.config))
