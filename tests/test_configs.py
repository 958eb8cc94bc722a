"""Every YAML in conf/ composes, declares the whisper block, and the tiny ones resolve completely."""

import pytest
from magpie_testing import PRIMARY_CONFIGS, REPO, compose
from omegaconf import OmegaConf

STAGES = ["online_po", "easy_online_po", "offline_po_datagen", "offline_po_dpo"]  # the stages that load models
MODEL_CONFIGS = [name for name in PRIMARY_CONFIGS if not name.startswith("offline_po_pairs")]


PUBLISHED = {"online_po": "online_po_published", "offline_po_dpo": "offline_po_dpo_published"}
PUBLISHED["offline_po_datagen"] = "offline_po_datagen_published"


def test_every_stage_and_its_tiny_variant_exist():
    stages = set(STAGES) | {"offline_po_pairs"}
    assert set(PRIMARY_CONFIGS) == stages | {f"{s}_tiny" for s in stages} | set(PUBLISHED.values())


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


# NVIDIA-NeMo/Speech docs/source/tts/magpietts-po.rst, the values its commands set (model.* unless trainer.*).
NEMO_PO_DOC = {
    "online_po": {
        "n_generations_per_item": 12,
        "reference_free": True,
        "grpo_beta": 0.0,
        "inference_topk": 2016,
        "inference_temperature": 0.8,
        "use_kv_cache_during_online_po": True,
        "max_decoder_steps": 430,
        "cfg_unconditional_prob": 0.0,
        "alignment_loss_scale": 0.0,
        "prior_scaling_factor": None,
        "encoder.p_dropout": 0.0,
        "decoder.p_dropout": 0.0,
        "optim.lr": 1e-7,
        "optim.sched": None,
        "trainer.gradient_clip_val": 2.5,
    },
    "offline_po_dpo": {"dpo_beta": 0.01, "dpo_sft_loss_weight": 0.0, "optim.lr": 2e-7, "optim.sched": None},
    "offline_po_datagen": {"alignment_loss_scale": 0.002, "prior_scaling_factor": None},
}


@pytest.mark.parametrize("stage", sorted(PUBLISHED))
def test_each_published_config_carries_nemos_recommended_settings_and_is_valid(tiny, stage):
    """A starting point at the published size: every key valid (the stage's own checks, on the tiny files), and the
    values NeMo's PO documentation gives, as given."""
    from nemo_ext.stages import STAGES as STAGE_OBJECTS

    manifest = tiny.dpo_manifest if stage == "offline_po_dpo" else tiny.manifest
    paths = [f"init_from_ptl_ckpt={tiny.reference_checkpoint}", f"codecmodel_path={tiny.codec}"]
    if stage == "offline_po_datagen":
        paths += [f"data.test_manifest={manifest}"]
    else:
        paths += [f"data.train_manifest={manifest}", f"data.val_manifest={manifest}"]
    if stage != "offline_po_dpo":
        paths += [
            f"model.whisper.pretrained={tiny.whisper}",
            f"model.speaker_verification.pretrained={tiny.speaker_verification}",
            f"model.nemo_asr.pretrained={tiny.nemo_asr}",
        ]
    cfg = compose(PUBLISHED[stage], paths)
    STAGE_OBJECTS[stage].parse(cfg)
    for key, value in NEMO_PO_DOC[stage].items():
        dotted = key if key.startswith("trainer.") else f"model.{key}"
        assert OmegaConf.select(cfg, dotted) == value, dotted
    # Each value says where it comes from.
    text = (REPO / "conf" / f"{PUBLISHED[stage]}.yaml").read_text()
    for line in text.splitlines():
        if ":" in line and not line.lstrip().startswith("#") and not line.rstrip().endswith(":"):
            assert "#" in line, f"{PUBLISHED[stage]}.yaml: no source for {line.strip()!r}"
