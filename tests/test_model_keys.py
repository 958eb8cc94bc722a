"""`model.*` keys: the pinned sets equal what NeMo's installed source reads, and a key nobody reads is refused
before any model is built, with the key a user probably meant."""

from __future__ import annotations

import pytest
from magpie_testing import PRIMARY_CONFIGS, compose

from nemo_ext import model_keys
from nemo_ext.errors import ConfigError
from nemo_ext.nemo_source_keys import keys_read, keys_read_by_class, keys_read_by_module
from nemo_ext.recipes import easy_online_po, offline_po_datagen, offline_po_dpo, online_po

RECIPES = {
    "online_po": online_po,
    "offline_po_datagen": offline_po_datagen,
    "offline_po_dpo": offline_po_dpo,
    "easy_online_po": easy_online_po,
}


def test_pinned_keys_are_what_nemos_source_reads():
    for family in (model_keys.MAGPIETTS, model_keys.EASY_MAGPIETTS):
        base = set().union(*(keys_read_by_module(m) for m in family.base_modules))
        assert base == family.keys, f"NeMo changed {family.name}: regenerate nemo_ext/model_keys.py"
    for stage, (cls, pinned) in model_keys.NEMO_STAGES.items():
        family = model_keys.STAGE_FAMILY[stage]
        assert keys_read_by_class(family.po_module, cls) - family.keys == pinned, cls


def test_the_scanner_finds_every_way_of_reading_a_key():
    import ast

    source = "def f(self, cfg):\n    cfg.get('a'); self.cfg.b; self._cfg['c']; 'd' in cfg; other.get('e'); x.f\n"
    assert keys_read(ast.parse(source)) == {"a", "b", "c", "d"}


@pytest.mark.parametrize("config_name", [name for name in PRIMARY_CONFIGS if name.rsplit("_tiny")[0] in RECIPES])
def test_every_key_the_stage_configs_declare_is_read(config_name):
    cfg = compose(config_name, ["init_from_ptl_ckpt=/x", "codecmodel_path=/x"])
    stage = config_name.removesuffix("_tiny")
    model_keys.check_model_keys(cfg.model, stage)


@pytest.mark.parametrize(
    ("stage", "typo", "meant"),
    [
        ("online_po", "+model.num_generations_per_item=12", "n_generations_per_item"),
        ("online_po", "+model.grpo_betta=0.1", "grpo_beta"),
        ("offline_po_dpo", "+model.dpo_loss=ipo", "dpo_loss_type"),
        ("offline_po_datagen", "+model.pref_language=it", "pref_set_language"),
        ("easy_online_po", "+model.entropy_coef=0.01", "entropy_coeff"),
    ],
)
def test_a_key_nobody_reads_is_refused_with_a_suggestion(tiny_config, tmp_path, stage, typo, meant):
    key = typo.split("=")[0].removeprefix("+")
    with pytest.raises(ConfigError, match=rf"^{key}=.*did you mean `{meant}`\?") as refused:
        RECIPES[stage].validated_config(tiny_config(f"{stage}_tiny", typo))
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "runs").exists()


def test_an_architecture_key_nemo_reads_is_accepted(tiny_config):
    cfg = online_po.validated_config(tiny_config("online_po_tiny", "+model.cfg_unconditional_prob=0.1"))
    assert cfg.model.cfg_unconditional_prob == 0.1


@pytest.mark.parametrize("stage", sorted(RECIPES))
def test_every_default_that_is_not_nemos_is_listed_with_its_reason(stage):
    """README says every key is declared with its default: where that default is not NeMo's code default (or NeMo
    has none), it is a deliberate choice in model_keys.DELIBERATE_DEFAULTS and a row of the README."""
    from omegaconf import OmegaConf

    from nemo_ext.nemo_source_keys import code_defaults_for

    nemo_class, stage_keys = model_keys.NEMO_STAGES[stage]
    family = model_keys.STAGE_FAMILY[stage]
    nemo_defaults = code_defaults_for(family.po_module, nemo_class, family.base_modules)
    ours = OmegaConf.to_container(compose(stage, ["init_from_ptl_ckpt=/x", "codecmodel_path=/x"]).model)
    nemo_keys = family.keys | stage_keys
    differing = {
        key
        for key, value in ours.items()
        if key in nemo_keys and key != "optim" and value not in nemo_defaults.get(key, {object()})
    }
    listed = {key for (listed_stage, key) in model_keys.DELIBERATE_DEFAULTS if listed_stage == stage}
    assert differing == listed
    readme = (__import__("magpie_testing").REPO / "README.md").read_text()
    for key in listed:
        assert f"| `{stage}` | `{key}` |" in readme, key


def test_easy_grpo_declares_every_key_its_nemo_class_reads():
    """Each key NeMo's EasyMagpieTTSModelOnlinePO reads beyond the architecture is in the stage YAML with a default,
    except the ones named here with their reason."""
    declared = set(compose("easy_online_po", ["init_from_ptl_ckpt=/x", "codecmodel_path=/x"]).model)
    not_declared = {
        "reference_model_ckpt_path": "set by the recipe: the checkpoint the policy starts from",
        "max_valid_codes_len": "NeMo derives it from max_decoder_steps when absent, and reads no null",
        **{key: f"read as {meant}" for key, meant in model_keys.REPLACED_KEYS["easy_online_po"].items()},
    }
    assert model_keys.EASY_GRPO_KEYS - set(not_declared) <= declared
    assert not declared & set(model_keys.REPLACED_KEYS["easy_online_po"])
