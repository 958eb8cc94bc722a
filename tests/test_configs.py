"""Every YAML in conf/ composes, declares the whisper block, and the tiny ones resolve completely."""

import pytest
from magpie_testing import PRIMARY_CONFIGS, compose
from omegaconf import OmegaConf

STAGES = ["online_po", "easy_online_po", "offline_po_datagen", "offline_po_dpo"]  # the stages that load models
MODEL_CONFIGS = [name for name in PRIMARY_CONFIGS if not name.startswith("offline_po_pairs")]


def test_every_stage_and_its_tiny_variant_exist():
    stages = set(STAGES) | {"offline_po_pairs"}
    assert set(PRIMARY_CONFIGS) == stages | {f"{s}_tiny" for s in stages}


@pytest.mark.parametrize("name", ["offline_po_pairs", "offline_po_pairs_tiny"])
def test_pair_config_composes_and_needs_only_the_datagen_run(name):
    cfg = compose(name)
    assert OmegaConf.is_missing(cfg, "datagen_run")
    assert set(cfg.pairs) == {
        "group_size",
        "chosen_per_group",
        "cer_threshold",
        "min_duration",
        "max_duration",
        "val_pairs",
        "seed",
    }


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_config_composes_with_whisper_defaults(name):
    cfg = compose(name)
    assert cfg.model.whisper.dtype == "auto"
    expected = "openai/whisper-large-v3" if not name.endswith("_tiny") else "${tiny_root}/whisper-tiny"
    assert OmegaConf.to_container(cfg.model.whisper, resolve=False)["pretrained"] == expected
    assert "whisper" not in cfg  # the shortcut is for the command line only


@pytest.mark.parametrize("name", STAGES)
def test_real_config_requires_only_paths(name):
    cfg = compose(name)
    missing = sorted(k for k in ("init_from_ptl_ckpt", "codecmodel_path") if OmegaConf.is_missing(cfg, k))
    assert missing == ["codecmodel_path", "init_from_ptl_ckpt"]
    data_missing = [k for k in cfg.data if OmegaConf.is_missing(cfg.data, k)]
    assert data_missing == (["test_manifest"] if name == "offline_po_datagen" else ["train_manifest"])
    model_missing = [k for k in cfg.model if OmegaConf.is_missing(cfg.model, k)]
    assert model_missing == []


def test_online_po_declares_grpo_keys():
    model = compose("online_po").model
    for key in (
        "n_generations_per_item",
        "reward_asr_model",
        "reference_free",
        "loss_type",
        "grpo_beta",
        "cer_reward_weight",
        "ssim_reward_weight",
        "scale_rewards",
        "max_decoder_steps",
    ):
        assert key in model, key
    assert model.reward_asr_model == "whisper"


@pytest.mark.parametrize("name", [f"{s}_tiny" for s in STAGES])
def test_tiny_config_resolves_completely(name, tiny):
    cfg = compose(name, [f"tiny_root={tiny.root}"])
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    easy = name.startswith("easy_")
    assert container["init_from_ptl_ckpt"] == (tiny.easy_reference_checkpoint if easy else tiny.reference_checkpoint)
    assert container["codecmodel_path"] == (tiny.easy_codec if easy else tiny.codec)
    assert container["model"]["whisper"]["pretrained"] == tiny.whisper
