"""model.disable_dropout (TRL's name) for GRPO, EasyMagpieTTS GRPO and DPO: every dropout module of the policy and of
the frozen reference at p = 0, at the published dropout 0.1, read from the built models and seen in the first step,
where policy and reference weights are equal: the KL (GRPO, NeMo's own reference draws) and DPO's implicit-reward
margin are exactly 0 with it and not without it."""

from __future__ import annotations

import pytest
import torch
from magpie_testing import PUBLISHED_STOCHASTICITY

from nemo_ext.stages import EASY_ONLINE_PO, OFFLINE_PO_DPO, ONLINE_PO
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.e2e
DROPOUT_ONLY = tuple(o for o in PUBLISHED_STOCHASTICITY if "p_dropout" in o)  # context drop left at 0


def dropout_probabilities(module) -> list[float]:
    return [m.p for m in module.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]


def first_logged(tmp_path, key) -> float:
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    return [row[key] for row in read_offline_run(run_file).history if key in row][0]


@pytest.mark.parametrize("disabled", [True, False], ids=["disabled", "kept"])
def test_grpo_policy_and_reference_dropout(tiny_config, tmp_path, disabled):
    overrides = (*DROPOUT_ONLY, "model.reference_policy_mode=train", "trainer.max_steps=1")
    result = ONLINE_PO.run(tiny_config("online_po_tiny", *overrides, f"model.disable_dropout={disabled}"))
    policy, reference = result.model, result.model._reference_model
    assert result.model.cfg.decoder.p_dropout == 0.1  # the architecture is the checkpoint's
    for module in (policy, reference):
        probabilities = dropout_probabilities(module)
        assert probabilities and set(probabilities) == ({0.0} if disabled else {0.0, 0.1})
    kl = first_logged(tmp_path, "learning/kl")
    assert kl == 0.0 if disabled else kl > 0.0


@pytest.mark.parametrize("disabled", [True, False], ids=["disabled", "kept"])
def test_dpo_policy_and_reference_dropout(tiny_config, tmp_path, disabled):
    # The reference in NeMo's mode (eval): with dropout kept, the policy's masks alone part the two at equal weights
    # (with `matched`, the default, the reference replays them: tests/test_parity_nemo.py).
    nemos_reference = "model.reference_policy_mode=eval"
    result = OFFLINE_PO_DPO.run(
        tiny_config(
            "offline_po_dpo_tiny",
            *DROPOUT_ONLY,
            "trainer.max_steps=1",
            f"model.disable_dropout={disabled}",
            nemos_reference,
        )
    )
    for module in (result.model, result.model._reference_model):
        probabilities = dropout_probabilities(module)
        assert probabilities and set(probabilities) == ({0.0} if disabled else {0.0, 0.1})
    margin = first_logged(tmp_path, "learning/dpo_reward_margin")
    assert margin == 0.0 if disabled else margin != 0.0


def test_easy_grpo_policy_and_reference_dropout(tiny_config):
    result = EASY_ONLINE_PO.run(tiny_config("easy_online_po_tiny", "trainer.max_steps=1", "model.disable_dropout=true"))
    for module in (result.model, result.model._reference_model):
        probabilities = dropout_probabilities(module)
        assert probabilities and set(probabilities) == {0.0}
