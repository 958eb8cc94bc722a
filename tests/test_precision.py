"""Every stage x every `trainer.precision` Lightning accepts: it completes a step, or it is refused in one line
before any model is built. CPU cases here (16-mixed is refused on a CPU: Lightning would run it as bf16-mixed,
without the scaler); the CUDA cases are gated and
scripts/gpu_report.sh runs them on a GPU node."""

from __future__ import annotations

import pytest
import torch
from magpie_testing import PUBLISHED_STOCHASTICITY, requires_cuda

from nemo_ext.errors import ConfigError
from nemo_ext.settings.lightning_trainer import TRAINER_ARGUMENTS
from nemo_ext.stages import STAGES

MODEL_STAGES = ("online_po", "easy_online_po", "offline_po_datagen", "offline_po_dpo")
# Lightning's spellings (its signature): the aliases 32 / 16 / bf16 / 64 are Lightning's own for 32-true / 16-mixed
# / bf16-mixed / 64-true, checked alike.
PRECISIONS = [eval(token) for token in TRAINER_ARGUMENTS["precision"] if token != "None"]  # noqa: S307
ALIASES = {32: "32-true", "32": "32-true", 16: "16-mixed", "16": "16-mixed", "bf16": "bf16-mixed"}
ALIASES |= {64: "64-true", "64": "64-true"}
CANONICAL = sorted({str(ALIASES.get(p, p)) for p in PRECISIONS})

# On the CPU: what is refused, and why (the start of the one line); everything else completes a step.
REFUSED_ON_CPU = {
    ("online_po", "16-true"): "trainer.precision='16-true' is invalid; allowed: 32-true, bf16-mixed",
    ("online_po", "bf16-true"): "trainer.precision='bf16-true' is invalid; allowed: 32-true or bf16-mixed on the CPU",
    ("offline_po_dpo", "16-true"): "trainer.precision='16-true' is invalid; allowed: 32-true, bf16-mixed",
    ("offline_po_dpo", "bf16-true"): "trainer.precision='bf16-true' is invalid; allowed: 32-true or bf16-mixed on the",
    ("offline_po_datagen", "16-true"): "trainer.precision='16-true' is invalid; allowed: 32-true, bf16-mixed",
    ("easy_online_po", "16-true"): "trainer.precision='16-true' is invalid; allowed: 32-true, 16-mixed or",
    ("easy_online_po", "bf16-true"): "trainer.precision='bf16-true' is invalid; allowed: 32-true, 16-mixed or",
}
for stage in MODEL_STAGES:
    for engine in ("transformer-engine", "transformer-engine-float16"):
        REFUSED_ON_CPU[(stage, engine)] = f"trainer.precision='{engine}' is invalid; allowed: 32-true, 16-mixed"
    # Lightning would run it as bf16-mixed without the scaler (tests/test_real_settings.py tests the scaler itself).
    REFUSED_ON_CPU[(stage, "16-mixed")] = "trainer.precision='16-mixed' is invalid; allowed: 32-true, bf16-mixed or"

CASES = [(stage, precision) for stage in MODEL_STAGES for precision in CANONICAL]


def test_every_spelling_lightning_accepts_is_covered():
    assert len(PRECISIONS) == 15 and set(CANONICAL) >= {"32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true"}


@pytest.mark.parametrize("alias", sorted(ALIASES, key=str), ids=repr)
@pytest.mark.parametrize("stage", MODEL_STAGES)
def test_an_alias_is_judged_as_its_canonical_spelling(tiny_config, stage, alias):
    def verdict(precision):
        try:
            STAGES[stage].parse(tiny_config(f"{stage}_tiny", f"trainer.precision={precision}"))
        except ConfigError as error:
            return str(error).split(" is invalid")[1]
        return "accepted"

    assert verdict(alias) == verdict(ALIASES[alias])


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(("stage", "precision"), CASES, ids=[f"{s}-{p}" for s, p in CASES])
def test_each_stage_and_precision_completes_a_step_or_is_refused_up_front(tiny_config, tmp_path, stage, precision):
    overrides = (f"trainer.precision={precision}", "trainer.accelerator=cpu", "trainer.max_steps=1")
    expected = REFUSED_ON_CPU.get((stage, precision))
    if expected:
        with pytest.raises(ConfigError) as refused:
            STAGES[stage].run(tiny_config(f"{stage}_tiny", *overrides))
        assert str(refused.value).startswith(expected), str(refused.value)
        assert not (tmp_path / "runs").exists()  # before any model: nothing written
        return
    default_dtype = torch.get_default_dtype()
    result = STAGES[stage].run(tiny_config(f"{stage}_tiny", *overrides))
    assert torch.get_default_dtype() == default_dtype  # 64-true leaves nothing behind
    if stage == "offline_po_datagen":
        assert len(result.metrics_files()) == 4
    else:
        assert result.trainer.global_step == 1


# At the settings users run: mixed precision with the published dropout and context drop, and for GRPO the loop that
# steps the optimizer itself (several updates per rollout batch, clipping).
USERS_SETTINGS = {
    "online_po": ("model.num_iterations=2", "trainer.max_steps=2", *PUBLISHED_STOCHASTICITY),
    "easy_online_po": ("trainer.max_steps=1",),
    "offline_po_datagen": PUBLISHED_STOCHASTICITY,
    "offline_po_dpo": ("trainer.max_steps=1", *PUBLISHED_STOCHASTICITY),
}


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("stage", MODEL_STAGES)
def test_each_stage_completes_at_bf16_mixed_with_the_published_randomness(tiny_config, stage):
    overrides = ("trainer.precision=bf16-mixed", "trainer.accelerator=cpu", *USERS_SETTINGS[stage])
    result = STAGES[stage].run(tiny_config(f"{stage}_tiny", *overrides))
    if stage == "offline_po_datagen":
        assert len(result.metrics_files()) == 4
        return
    assert result.trainer.global_step == (2 if stage == "online_po" else 1)
    if stage == "online_po":
        figures = result.model.last_learning_figures
        assert figures["learning/importance_ratio_last"] > 0 and figures["learning/kl"] >= 0
    if stage != "easy_online_po":
        assert result.model.cfg.decoder.p_dropout == 0.1 and result.model.cfg.cfg_unconditional_prob == 0.1


GPU_PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "bf16-true", "16-true")


@requires_cuda
@pytest.mark.gpu
@pytest.mark.e2e
@pytest.mark.parametrize("precision", GPU_PRECISIONS)
@pytest.mark.parametrize("stage", MODEL_STAGES)
def test_each_stage_and_precision_on_a_gpu(tiny_config, stage, precision):
    overrides = (
        f"trainer.precision={precision}",
        "trainer.accelerator=gpu",
        "trainer.devices=1",
        "trainer.max_steps=1",
    )
    if stage == "easy_online_po" and precision in ("bf16-true", "16-true"):
        with pytest.raises(ConfigError, match="NeMo's EasyMagpieTTS decoding passes float32 inputs"):
            STAGES[stage].run(tiny_config(f"{stage}_tiny", *overrides))
        return
    result = STAGES[stage].run(tiny_config(f"{stage}_tiny", *overrides))
    assert result.model is not None
