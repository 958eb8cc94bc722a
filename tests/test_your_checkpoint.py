"""docs/your_checkpoint.md's path on the tiny fixtures, as a user runs it: a released `.nemo` becomes the recipes'
checkpoint (one command), GRPO trains from it, and the trained policy is exported to a `.nemo` that NeMo's own
`MagpieTTSModel.restore_from` loads with the trained weights. Plus the manifest command for DataGen's input."""

from __future__ import annotations

import glob
import json

import pytest
import torch
from magpie_testing import run_recipe, run_script

from nemo_ext.architecture import DATASET_KEYS
from nemo_ext.checkpoints import configs_in_checkpoints_allowed
from nemo_ext.manifests import write_repeated_manifest

pytestmark = pytest.mark.e2e


def released_nemo(tiny, path) -> str:
    """What NVIDIA releases, at the tiny size: NeMo's MagpieTTSModel with the reference weights, saved by save_to."""
    from nemo.collections.tts.models import MagpieTTSModel
    from omegaconf import OmegaConf, open_dict

    with configs_in_checkpoints_allowed():
        checkpoint = torch.load(tiny.reference_checkpoint, map_location="cpu")
    config = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(checkpoint["hyper_parameters"]["cfg"])))
    with open_dict(config):
        for key in DATASET_KEYS:
            config.pop(key, None)
        config.codecmodel_path = tiny.codec
    model = MagpieTTSModel(cfg=config)
    model.load_state_dict(checkpoint["state_dict"])
    model.save_to(str(path))
    return str(path)


def weights(state_dict) -> dict:
    return {k: v for k, v in state_dict.items() if not k.startswith(("_codec_model.", "_reference_model."))}


@pytest.mark.slow  # three subprocesses: conversion, GRPO, export
def test_from_a_released_nemo_through_grpo_to_a_nemo_that_nemo_loads(tiny, tmp_path):
    from nemo.collections.tts.models import MagpieTTSModel

    nemo_in = released_nemo(tiny, tmp_path / "magpie_tiny.nemo")
    converted = run_script("scripts/nemo_to_ckpt.py", nemo_in, str(tmp_path / "start"))
    assert converted.returncode == 0, converted.stderr[-3000:]
    checkpoint = converted.stdout.strip().splitlines()[-1]
    assert checkpoint == str(tmp_path / "start" / "magpie_tiny.ckpt")
    released = MagpieTTSModel.restore_from(nemo_in, map_location="cpu")
    with configs_in_checkpoints_allowed():
        start = torch.load(checkpoint, map_location="cpu")
    assert start["state_dict"].keys() == weights(released.state_dict()).keys()
    assert all(torch.equal(start["state_dict"][k], v) for k, v in weights(released.state_dict()).items())

    exp_dir = tmp_path / "runs"
    trained = run_recipe(
        "online_po.py",
        "--config-name",
        "online_po_tiny",
        f"tiny_root={tiny.root}",
        f"init_from_ptl_ckpt={checkpoint}",  # the policy and its frozen reference
        f"exp_manager.exp_dir={exp_dir}",
        "trainer.max_steps=2",
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    [final] = glob.glob(str(exp_dir / "tiny_online_po" / "*" / "checkpoints" / "*last.ckpt"))

    exported = run_script("scripts/export_nemo.py", final, str(tmp_path / "magpie_po.nemo"))
    assert exported.returncode == 0, exported.stderr[-3000:]
    restored = MagpieTTSModel.restore_from(str(tmp_path / "magpie_po.nemo"), map_location="cpu")
    assert type(restored) is MagpieTTSModel
    with configs_in_checkpoints_allowed():
        policy = weights(torch.load(final, map_location="cpu")["state_dict"])
    restored_weights = weights(restored.state_dict())
    assert restored_weights.keys() == policy.keys()
    assert all(torch.equal(restored_weights[k], v) for k, v in policy.items())
    # GRPO moved the weights: the export is the trained policy, not the release.
    assert any(not torch.equal(restored_weights[k], start["state_dict"][k]) for k in policy)
    assert "reference_model_ckpt_path" not in restored.cfg and restored.cfg.get("train_ds") is None


def test_a_file_that_is_no_nemo_model_is_refused_in_one_line(tmp_path):
    import tarfile

    with tarfile.open(tmp_path / "not_a_model.nemo", "w") as archive:
        (tmp_path / "readme.txt").write_text("hello")
        archive.add(tmp_path / "readme.txt", arcname="./readme.txt")
    result = run_script("scripts/nemo_to_ckpt.py", str(tmp_path / "not_a_model.nemo"), str(tmp_path / "out"))
    assert result.returncode != 0
    assert "is not a NeMo model file: it holds no model_config.yaml" in result.stderr


def test_datagens_input_repeats_each_item_group_size_times(tmp_path):
    plain = tmp_path / "plain.json"
    items = [{"audio_filepath": f"/a/{i}.wav", "text": f"text {i}"} for i in range(3)]
    plain.write_text("".join(json.dumps(item) + "\n" for item in items) + "\n")
    result = run_script("scripts/repeat_manifest.py", str(plain), str(tmp_path / "datagen.json"), "--group-size", "4")
    assert result.returncode == 0, result.stderr
    assert "12 lines (3 items x 4)" in result.stdout
    lines = [json.loads(line) for line in (tmp_path / "datagen.json").read_text().splitlines()]
    assert lines == [item for item in items for _ in range(4)]
    with pytest.raises(ValueError, match="group_size=1"):
        write_repeated_manifest(str(plain), str(tmp_path / "x.json"), 1)
