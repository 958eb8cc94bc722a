"""What the settings users run (several ranks, mixed precision, gradient accumulation) must refuse before anything is
built, and the private Lightning / PyTorch state this project still writes, pinned against the installed versions."""

from __future__ import annotations

import pytest

from nemo_ext.errors import ConfigError
from nemo_ext.grpo import reward_terms
from nemo_ext.grpo.losses import EASY_MAGPIETTS, MAGPIETTS
from nemo_ext.stages import ONLINE_PO
from nemo_ext.telemetry import phases


@pytest.mark.parametrize("value", ["1.0", "0.0", "1", "0", "2.5"])
def test_a_number_for_scale_rewards_is_refused(tiny_config, value):
    """1.0 == True in Python: it passed as NeMo's `true` (group) to NeMo's class and read as unscaled here."""
    with pytest.raises(ConfigError, match=rf"^model.scale_rewards={value} is invalid; allowed: group, batch, none"):
        ONLINE_PO.parse(tiny_config("online_po_tiny", f"model.scale_rewards={value}"))


@pytest.mark.parametrize("value", ["true", "false", "group", "batch", "none"])
def test_every_scale_rewards_spelling_is_accepted(tiny_config, value):
    ONLINE_PO.parse(tiny_config("online_po_tiny", f"model.scale_rewards={value}"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ("model.num_iterations=2", "trainer.max_steps=4"),
            "trainer.accumulate_grad_batches=2 is invalid; allowed: 1 with model.num_iterations=2",
        ),
        (
            ("model.loss_type=dapo",),
            "trainer.accumulate_grad_batches=2 is invalid; allowed: 1 with model.loss_type=dapo",
        ),
    ],
    ids=["num_iterations", "dapo"],
)
def test_gradient_accumulation_that_cannot_be_made_right_is_refused_before_the_build(
    tiny_config, tmp_path, overrides, message
):
    with pytest.raises(ConfigError) as refused:
        ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.accumulate_grad_batches=2", *overrides))
    assert str(refused.value).startswith(message), str(refused.value)
    assert not (tmp_path / "runs").exists()  # refused before any model: nothing written


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
def test_gradient_accumulation_is_accepted_where_it_is_right(tiny_config, loss_type):
    ONLINE_PO.parse(tiny_config("online_po_tiny", "trainer.accumulate_grad_batches=2", f"model.loss_type={loss_type}"))


def test_a_scored_reward_term_for_easymagpietts_is_refused_at_registration():
    """EasyMagpieTTS's GRPO step rewards and updates inside NeMo's one training_step: a term of ours would be
    declared, validated and timed, and never scored."""
    term = reward_terms.RewardTerm(
        name="loudness",
        weight_key="loudness_reward_weight",
        metric="loudness_reward",
        model="a meter",
        phase=phases.REWARD,
        families=(MAGPIETTS, EASY_MAGPIETTS),
        score=lambda model, rollouts: [0.5] * len(rollouts.metrics),
    )
    with pytest.raises(ValueError, match="'loudness': families may include EasyMagpieTTSModel only for terms NeMo"):
        reward_terms.register_reward_term(term)
    assert "loudness" not in reward_terms.REWARD_TERMS
    magpie_only = reward_terms.RewardTerm(**{**vars(term), "families": (MAGPIETTS,)})
    try:
        assert reward_terms.register_reward_term(magpie_only) is magpie_only
    finally:
        reward_terms.unregister_reward_term("loudness")


# ---- private state still written, pinned against what is installed ----
def test_lightnings_batches_that_stepped_is_still_the_counter_logged_rows_are_labelled_with():
    """policy_updates.py and stopping.py write `fit_loop.epoch_loop._batches_that_stepped` (Lightning labels each
    logged row with it). A Lightning that renames it would make those writes silently add a new attribute."""
    import inspect

    import lightning.pytorch as pl
    from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    loop = trainer.fit_loop.epoch_loop
    assert isinstance(loop, _TrainingEpochLoop)
    assert loop._batches_that_stepped == 0
    # It is what the logger connector reads as the step of a logged row, and what the checkpoint restores.
    assert "_batches_that_stepped" in inspect.getsource(type(trainer._logger_connector).log_metrics)
    assert "_batches_that_stepped" in inspect.getsource(_TrainingEpochLoop.on_save_checkpoint)
    assert "_batches_that_stepped" in inspect.getsource(_TrainingEpochLoop.on_load_checkpoint)


def test_ddp_still_reads_parameters_to_ignore_and_the_module_attribute_that_fills_it(tmp_path):
    """reward_models_mixin.py sets `_ddp_params_and_buffers_to_ignore` on the module before DDP wraps it, and adds
    the buffers NeMo ASR registers later to the wrapper's `parameters_to_ignore` set. A real one-rank gloo DDP: both
    names are still the ones DDP reads, and a buffer added to the set after the wrap is left out of the buffers DDP
    synchronises at the next forward."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        module = torch.nn.Linear(2, 2)
        module.register_buffer("frozen_buffer", torch.zeros(1))
        module._ddp_params_and_buffers_to_ignore = ["frozen_buffer"]
        wrapper = DistributedDataParallel(module)
        assert wrapper.parameters_to_ignore == {"frozen_buffer"}
        assert "frozen_buffer" not in wrapper.named_module_buffers

        module.register_buffer("registered_later", torch.zeros(1))  # as transcribe() registers encoder.seq_range
        wrapper.parameters_to_ignore.add("registered_later")
        wrapper(torch.ones(1, 2))
        assert "registered_later" not in wrapper.named_module_buffers
    finally:
        dist.destroy_process_group()


# ---- clipping under a gradient scaler ----
class GradientNorms:
    """Records, per optimizer step, the gradient norm the hooks see (after the scaler's unscale, before clipping)
    and, after the step, the norm the optimizer stepped with (after clipping)."""

    def __init__(self):
        import lightning.pytorch as pl

        outer = self

        class Recorder(pl.Callback):
            def on_before_optimizer_step(self, trainer, pl_module, optimizer):
                outer.before_clipping.append(outer.norm(optimizer))

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                outer.stepped_with.append(outer.norm(trainer.optimizers[0]))
                outer.logged.append(float(trainer.callback_metrics["learning/grad_norm"]))
                outer.scales.append(float(trainer.precision_plugin.scaler.get_scale()))

        self.callback = Recorder()
        self.before_clipping, self.stepped_with, self.logged, self.scales = [], [], [], []

    @staticmethod
    def norm(optimizer) -> float:
        import torch

        grads = [p.grad.float() for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


@pytest.mark.e2e
def test_several_updates_clip_the_unscaled_gradients_under_a_gradient_scaler(tiny_config, tmp_path):
    """16-mixed with the loop that steps the optimizer itself (num_iterations=2): Lightning's scaler unscales between
    the backward and on_before_optimizer_step. Clipped before the step, the scaled gradients (x1024 here) were
    clipped to the bound and then divided by the scale: the step used a gradient 1024 times smaller than the bound,
    and learning/grad_norm was measured on it. A real Trainer, NeMo's model, torch.amp.GradScaler on the CPU."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.plugins.precision import MixedPrecision
    from magpie_testing import stage_configs
    from parity_harness import build

    from nemo_ext.models import MagpieTTSOnlinePO

    cfg, model_cfg = stage_configs(
        ONLINE_PO,
        # NeMo's CTC alignment loss fills with -1e15, which fp16 cannot hold (NeMo's PO recipe turns it off)
        tiny_config(
            "online_po_tiny", "model.num_iterations=2", "trainer.max_steps=4", "+model.alignment_loss_scale=0.0"
        ),
    )
    bound = 1e-3  # below the tiny model's gradient norm, so the clip bites at every step
    norms = GradientNorms()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=10_000)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
        max_steps=4,
        logger=pl.loggers.CSVLogger(str(tmp_path), name="scaled"),
        enable_checkpointing=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        callbacks=[norms.callback],
    )
    model = build(MagpieTTSOnlinePO, cfg, model_cfg, trainer)
    model.manual_gradient_clipping = (bound, "norm")
    trainer.fit(model)

    assert trainer.global_step == 4 and len(norms.before_clipping) == 4 and len(norms.stepped_with) == 2
    assert set(norms.scales) == {1024.0}  # a real scale, never backed off (finite gradients)
    # Each step's gradient, unscaled, exceeds the bound; the optimizer then stepped with exactly the bound.
    assert min(norms.before_clipping) > 10 * bound, norms.before_clipping
    for stepped in norms.stepped_with:
        assert stepped == pytest.approx(bound, rel=1e-3), norms.stepped_with
    # learning/grad_norm is the unscaled norm before clipping (of each batch's last update).
    assert norms.logged == pytest.approx(norms.before_clipping[1::2], rel=1e-5)
