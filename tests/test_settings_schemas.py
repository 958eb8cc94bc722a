"""The schemas nemo_ext/settings pins so that a config is checked before Lightning, torch or NeMo is imported, each
compared with the installed package it was taken from: a Lightning or NeMo upgrade that changes one fails here."""

from __future__ import annotations

import importlib
import importlib.util

import pytest

from nemo_ext.settings import lightning_trainer, model_keys, nemo_exp_manager
from nemo_ext.settings.grpo import EASY_RULES, MAGPIETTS_RULES, SWITCH_NEEDS
from nemo_ext.settings.offline_po import DATAGEN_RULES, DPO_RULES
from nemo_ext_tools import pinned_schemas


def test_trainer_arguments_are_lightnings_signature():
    assert lightning_trainer.TRAINER_ARGUMENTS == pinned_schemas.lightning_trainer_arguments()


def test_strategy_and_accelerator_names_are_lightnings_registries():
    assert lightning_trainer.STRATEGY_NAMES == pinned_schemas.lightning_strategy_names()
    assert lightning_trainer.ACCELERATOR_NAMES == pinned_schemas.lightning_accelerator_names()


def test_exp_manager_schema_is_nemos_dataclass_field_by_field():
    from nemo.utils.exp_manager import ExpManagerConfig

    assert pinned_schemas.dataclass_tree(nemo_exp_manager.ExpManagerConfig) == pinned_schemas.dataclass_tree(
        ExpManagerConfig
    )


def test_exp_manager_schema_file_is_what_the_generator_writes():
    import inspect
    import subprocess

    generated = pinned_schemas.nemo_exp_manager_schema_source()
    formatted = subprocess.run(
        ["ruff", "format", "--stdin-filename", "x.py", "-"], input=generated, capture_output=True, text=True
    ).stdout
    assert formatted == inspect.getsource(nemo_exp_manager)


@pytest.mark.parametrize(
    ("switch", "module", "flag"),
    [
        ("use_pesq", "nemo.collections.tts.models.magpietts_preference_optimization", "HAVE_TORCHAUDIO"),
        ("use_utmos", "nemo.collections.tts.models.easy_magpietts_preference_optimization", "HAVE_UTMOSV2"),
    ],
)
def test_the_package_a_switch_needs_is_present_exactly_when_nemo_says_so(switch, module, flag):
    """The settings ask importlib for the package instead of importing NeMo: both answers agree here."""
    present = importlib.util.find_spec(SWITCH_NEEDS[switch]) is not None
    assert present == getattr(importlib.import_module(module), flag)


RULE_SETS = [
    ("MagpieTTSModelOnlinePO", model_keys.MAGPIETTS, MAGPIETTS_RULES),
    ("EasyMagpieTTSModelOnlinePO", model_keys.EASY_MAGPIETTS, EASY_RULES),
    ("MagpieTTSModelOfflinePODataGen", model_keys.MAGPIETTS, DATAGEN_RULES),
    ("MagpieTTSModelOfflinePO", model_keys.MAGPIETTS, DPO_RULES),
]
OUR_KEYS = {"reference_policy_mode", "rollout_audio_files", "datagen_seed", "num_iterations", "epsilon", "epsilon_high"}
OUR_KEYS |= {"skip_zero_std_groups", "empty_cuda_cache_every_step", "replay_random_draws", "disable_dropout"}
OUR_KEYS |= {"rollout_decoder", "importance_sampling_correction", "importance_sampling_cap"}


@pytest.mark.parametrize(("nemo_class", "family", "rules"), RULE_SETS, ids=[r[0] for r in RULE_SETS])
def test_each_rules_default_and_kind_are_derived_from_nemos_source(nemo_class, family, rules):
    """A key absent from the config takes the default NeMo's code gives it (`cfg.get(key, default)`), and its rule
    checks the kind of that default: derived from NeMo's source, not restated."""
    from nemo_ext_tools.nemo_source_keys import code_defaults_for, keys_read_by_class

    defaults = code_defaults_for(family.po_module, nemo_class, family.base_modules)
    read = keys_read_by_class(family.po_module, nemo_class) | family.keys
    kinds = {bool: {"bool"}, int: {"int", "number"}, float: {"number"}, str: {"choice", "text"}}
    for key, rule in rules.items():
        if key in OUR_KEYS:
            continue
        assert key in read, f"{key}: no code of {nemo_class} reads it"
        if key not in defaults:
            assert rule.default is None, f"{key}: NeMo has no default, the rule says {rule.default!r}"
            continue
        assert rule.default in defaults[key], f"{key}: NeMo's default {defaults[key]}, the rule's {rule.default!r}"
        assert rule.kind in kinds[type(rule.default)], f"{key}: a {type(rule.default).__name__} ruled as {rule.kind}"
