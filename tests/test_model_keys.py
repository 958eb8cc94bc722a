"""`model.*` keys: the pinned sets equal what NeMo's installed source reads, and a key nobody reads is refused
before any model is built, with the key a user probably meant."""

from __future__ import annotations

import pytest
from magpie_testing import PRIMARY_CONFIGS, compose

from nemo_ext.errors import ConfigError
from nemo_ext.settings import model_keys
from nemo_ext.stages import STAGES
from nemo_ext_tools.nemo_source_keys import keys_read, keys_read_by_class, keys_read_by_module

MODEL_STAGES = {name: stage for name, stage in STAGES.items() if stage.builds_a_model}


def test_pinned_keys_are_what_nemos_source_reads():
    for family in (model_keys.MAGPIETTS, model_keys.EASY_MAGPIETTS):
        base = set().union(*(keys_read_by_module(m) for m in family.base_modules))
        assert base == family.keys, f"NeMo changed {family.name}: regenerate nemo_ext/settings/model_keys.py"
    for stage in MODEL_STAGES.values():
        family = stage.family
        assert keys_read_by_class(family.po_module, stage.nemo_class) - family.keys == stage.nemo_keys, stage.name


def test_the_scanner_finds_every_way_of_reading_a_key():
    import ast

    source = "def f(self, cfg):\n    cfg.get('a'); self.cfg.b; self._cfg['c']; 'd' in cfg; other.get('e'); x.f\n"
    assert keys_read(ast.parse(source)) == {"a", "b", "c", "d"}


@pytest.mark.parametrize(
    "config_name", [name for name in PRIMARY_CONFIGS if name.removesuffix("_tiny") in MODEL_STAGES]
)
def test_every_key_the_stage_configs_declare_is_read(config_name):
    cfg = compose(config_name, ["init_from_ptl_ckpt=/x", "codecmodel_path=/x"])
    MODEL_STAGES[config_name.removesuffix("_tiny")].check_model_keys(cfg.model)


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
        MODEL_STAGES[stage].parse(tiny_config(f"{stage}_tiny", typo))
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "runs").exists()


def test_an_architecture_key_nemo_reads_is_accepted(tiny_config):
    settings = MODEL_STAGES["online_po"].parse(tiny_config("online_po_tiny", "+model.cfg_unconditional_prob=0.1"))
    assert settings.config.model.cfg_unconditional_prob == 0.1


@pytest.mark.parametrize("stage", sorted(MODEL_STAGES))
def test_every_default_that_is_not_nemos_is_listed_with_its_reason(stage):
    """Every key is declared with its default: where that default is not NeMo's code default (or NeMo has none), it
    is a deliberate choice in the stage's declaration (deliberate_defaults) and a row of docs/parity.md."""
    from omegaconf import OmegaConf

    from nemo_ext_tools.nemo_source_keys import code_defaults_for

    declared = MODEL_STAGES[stage]
    family = declared.family
    nemo_defaults = code_defaults_for(family.po_module, declared.nemo_class, family.base_modules)
    ours = OmegaConf.to_container(compose(stage, ["init_from_ptl_ckpt=/x", "codecmodel_path=/x"]).model)
    nemo_keys = family.keys | declared.nemo_keys
    differing = {
        key
        for key, value in ours.items()
        if key in nemo_keys and key != "optim" and value not in nemo_defaults.get(key, {object()})
    }
    listed = set(declared.deliberate_defaults)
    assert differing == listed
    readme = (__import__("magpie_testing").REPO / "docs" / "parity.md").read_text()
    for key in listed:
        assert f"| `{stage}` | `{key}` |" in readme, key


def test_easy_grpo_declares_every_key_its_nemo_class_reads():
    """Each key NeMo's EasyMagpieTTSModelOnlinePO reads beyond the architecture is in the stage YAML with a default,
    except the ones named here with their reason."""
    declared = set(compose("easy_online_po", ["init_from_ptl_ckpt=/x", "codecmodel_path=/x"]).model)
    not_declared = {
        "reference_model_ckpt_path": "set by the recipe: the checkpoint the policy starts from",
        "max_valid_codes_len": "NeMo derives it from max_decoder_steps when absent, and reads no null",
        **MODEL_STAGES["easy_online_po"].refused_keys,
    }
    assert model_keys.EASY_GRPO_KEYS - set(not_declared) <= declared
    assert not declared & set(MODEL_STAGES["easy_online_po"].refused_keys)
