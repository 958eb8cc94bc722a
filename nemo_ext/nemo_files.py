"""NeMo's released `.nemo` files in and out of the recipes.

In: NVIDIA releases MagpieTTS as `.nemo` (a tar of `model_config.yaml`, `model_weights.ckpt` and the tokenizers'
files, referred to as `nemo:<name>` in the config). The recipes start from a Lightning-style checkpoint, whose
`hyper_parameters.cfg` is the architecture (`init_from_ptl_ckpt`, also the GRPO and DPO reference).
`checkpoint_from_nemo` writes one: the weights as they are, the config with each `nemo:` path pointed at the
extracted file.

Out: `export_policy` builds NeMo's plain `MagpieTTSModel` from a training checkpoint of any stage here (the trained
policy: reward models, reference and codec are not in it) and saves a `.nemo` that `MagpieTTSModel.restore_from`
loads for NeMo's own inference.

    python scripts/nemo_to_ckpt.py magpie_tts_multilingual_357m.nemo checkpoints/magpie
    python scripts/export_nemo.py runs/.../checkpoints/last.ckpt magpie_po.nemo
"""

from __future__ import annotations

import os
import tarfile

from nemo_ext.architecture import DATASET_KEYS

CONFIG_NAME = "model_config.yaml"
WEIGHTS_NAME = "model_weights.ckpt"
ARTIFACT_PREFIX = "nemo:"
# What a stage's model config holds besides the architecture: the datasets (rebuilt from `data` by every stage), and
# the GRPO reference's path (a file of the training machine).
NOT_ARCHITECTURE = (*DATASET_KEYS, "reference_model_ckpt_path")


def _with_artifacts_resolved(node, artifacts_dir: str):
    """The config with each `nemo:<name>` string replaced by the extracted file's absolute path."""
    if isinstance(node, dict):
        return {key: _with_artifacts_resolved(value, artifacts_dir) for key, value in node.items()}
    if isinstance(node, list):
        return [_with_artifacts_resolved(value, artifacts_dir) for value in node]
    if isinstance(node, str) and node.startswith(ARTIFACT_PREFIX):
        path = os.path.join(artifacts_dir, node.removeprefix(ARTIFACT_PREFIX))
        if not os.path.isfile(path):
            raise FileNotFoundError(f"the config refers to {node}, which the .nemo file does not hold")
        return path
    return node


def checkpoint_from_nemo(nemo_path: str, out_dir: str) -> str:
    """Extract `nemo_path` into `out_dir/artifacts` and write `out_dir/<name>.ckpt` ({state_dict,
    hyper_parameters.cfg}) for `init_from_ptl_ckpt`. Returns the checkpoint's path."""
    import torch
    from omegaconf import OmegaConf

    from nemo_ext.compat import backport_tar_extraction_filter

    backport_tar_extraction_filter()  # Debian 12's Python 3.11.2 has no tar extraction filters
    artifacts_dir = os.path.abspath(os.path.join(out_dir, "artifacts"))
    os.makedirs(artifacts_dir, exist_ok=True)
    with tarfile.open(nemo_path) as archive:  # plain or gzipped, as NeMo writes either
        for member in archive.getmembers():
            if member.isfile():
                member.name = os.path.basename(member.name)  # NeMo writes ./<name>; no folders inside
                archive.extract(member, artifacts_dir, filter="data")
    config_path = os.path.join(artifacts_dir, CONFIG_NAME)
    weights_path = os.path.join(artifacts_dir, WEIGHTS_NAME)
    for needed in (config_path, weights_path):
        if not os.path.isfile(needed):
            raise FileNotFoundError(f"{nemo_path} is not a NeMo model file: it holds no {os.path.basename(needed)}")
    config = _with_artifacts_resolved(OmegaConf.to_container(OmegaConf.load(config_path)), artifacts_dir)
    state_dict = torch.load(weights_path, map_location="cpu", weights_only=True)
    name = os.path.splitext(os.path.basename(nemo_path))[0]
    checkpoint_path = os.path.join(out_dir, f"{name}.ckpt")
    temporary = f"{checkpoint_path}.{os.getpid()}.tmp"  # a stopped conversion leaves no half checkpoint to start from
    torch.save({"state_dict": state_dict, "hyper_parameters": {"cfg": OmegaConf.create(config)}}, temporary)
    os.replace(temporary, checkpoint_path)
    os.remove(weights_path)  # the checkpoint holds the weights now
    return checkpoint_path


def export_policy(checkpoint_path: str, nemo_path: str, codecmodel_path: str | None = None) -> str:
    """The policy of a training checkpoint of this project as NeMo's `MagpieTTSModel`, saved to `nemo_path`.
    `codecmodel_path`: where the codec is now (default: the path the training used)."""
    import torch
    from nemo.collections.tts.models import MagpieTTSModel
    from omegaconf import OmegaConf, open_dict

    from nemo_ext.checkpoints import configs_in_checkpoints_allowed
    from nemo_ext.compat import backport_tar_extraction_filter

    backport_tar_extraction_filter()
    with configs_in_checkpoints_allowed():
        checkpoint = torch.load(checkpoint_path, map_location="cpu")
    config = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(checkpoint["hyper_parameters"]["cfg"])))
    with open_dict(config):
        for key in NOT_ARCHITECTURE:
            config.pop(key, None)
        if codecmodel_path:
            config.codecmodel_path = codecmodel_path
    model = MagpieTTSModel(cfg=config)
    model.load_state_dict(checkpoint["state_dict"])  # strict: every policy weight, nothing else
    model.save_to(nemo_path)
    return nemo_path
