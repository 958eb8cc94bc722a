"""A stage's `model.optim` replaces the checkpoint's optimizer config as a whole, scheduler included."""

from __future__ import annotations

import pytest
from magpie_testing import stage_configs
from omegaconf import OmegaConf, open_dict
from parity_harness import train

from nemo_ext.architecture import load_architecture
from nemo_ext.models import MagpieTTSOnlinePO
from nemo_ext.stages import ONLINE_PO

pytestmark = pytest.mark.e2e
STAGE_LR = 3e-3  # online_po_tiny's model.optim.lr


def grpo(tiny_config, *overrides):
    return stage_configs(
        ONLINE_PO, tiny_config("online_po_tiny", "model.reward_asr_model=nemo", "trainer.max_steps=2", *overrides)
    )


def test_the_checkpoints_scheduler_is_dropped_and_one_can_be_set(tiny_config, tmp_path):
    """Learning rates read back at the end of steps 1 and 2 (a scheduler steps after that hook)."""
    cfg, model_cfg = grpo(tiny_config)
    # The tiny checkpoint carries NeMo's training scheduler, as real MagpieTTS checkpoints do. A merge (what the
    # recipe did, and what NeMo's example does without `~model.optim.sched`) keeps it under PO's optimizer.
    stage_model = OmegaConf.create(OmegaConf.to_container(cfg.model))
    del stage_model.optim["sched"]  # the stage YAML before this change declared no sched
    merged = OmegaConf.merge(load_architecture(ONLINE_PO.parse(cfg).run), stage_model)
    assert merged.optim.sched.name == "ExponentialLR" and merged.optim.sched.gamma == 0.998
    assert "sched" not in model_cfg.optim
    assert [step.lr for step in train(MagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "none").steps] == [
        STAGE_LR,
        STAGE_LR,
    ]

    with open_dict(merged):
        for key in ("codecmodel_path", "train_ds", "validation_ds", "reference_model_ckpt_path"):
            merged[key] = model_cfg[key]
    decayed = [step.lr for step in train(MagpieTTSOnlinePO, cfg, merged, str(tmp_path), "merged").steps]
    assert decayed == pytest.approx([STAGE_LR, STAGE_LR * 0.998], rel=1e-9)

    cfg, model_cfg = grpo(tiny_config, "model.optim.sched={name: ExponentialLR, gamma: 0.5}")
    assert [step.lr for step in train(MagpieTTSOnlinePO, cfg, model_cfg, str(tmp_path), "cli").steps] == (
        pytest.approx([STAGE_LR, STAGE_LR * 0.5], rel=1e-9)
    )


def test_sched_null_composes_and_no_delete_is_needed(tiny_config):
    """`model.optim.sched=null` is the default spelled out. NeMo's `~model.optim.sched` is not needed here (Hydra
    refuses deleting a null key: README)."""
    cfg, model_cfg = grpo(tiny_config, "model.optim.sched=null")
    assert "sched" not in model_cfg.optim
