"""`model.importance_sampling_correction`: TRL's truncated importance-sampling correction (per frame, truncated at
`model.importance_sampling_cap`), against a hand computation of the loss and its gradient, the alignment of the
rollout decoder's log-probs with the teacher-forced frames by hand, the settings' refusals, and a real GRPO run
whose gradient the cap shrinks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from nemo_ext.grpo.losses import LOSS_TYPES, LossContext
from nemo_ext.grpo.policy_loss import SampledLogps, SamplingCorrection, magpietts_policy_loss
from nemo_ext.stages import ONLINE_PO
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run


def test_the_rollout_decoders_log_probs_line_up_with_the_teacher_forced_frames_by_hand():
    # One rollout of 3 frames, one codebook, frames stacked by 2: teacher forcing sees the 3 codes, the end token
    # (frame 3) and nothing more; slot 0 holds frames 0 and 2, slot 1 frames 1 and 3.
    sampling = torch.tensor([[[-0.5, -0.25, -0.125]]])
    targets = torch.zeros(1, 1, 4, dtype=torch.long)
    sampled = SampledLogps.by_slot(sampling, torch.tensor([3]), targets, frame_stacking_factor=2, num_codebooks=1)
    assert [v.tolist() for v in sampled.values] == [[[-0.5, -0.125]], [[-0.25, 0.0]]]
    assert [v.tolist() for v in sampled.valid] == [[[True, True]], [[True, False]]]  # frame 3: the end token

    # Two rollouts of 3 and 2 frames, padded to 4 teacher-forced frames, two codebooks, no stacking.
    sampling = torch.arange(12, dtype=torch.float32).reshape(2, 2, 3).neg()
    targets = torch.zeros(2, 2, 4, dtype=torch.long)
    sampled = SampledLogps.by_slot(sampling, torch.tensor([3, 2]), targets, frame_stacking_factor=1, num_codebooks=2)
    assert sampled.values[1].tolist() == [[-3.0, -4.0, -5.0, 0.0], [-9.0, -10.0, -11.0, 0.0]]
    assert sampled.valid[0].tolist() == [[True, True, True, False], [True, True, False, False]]


def test_the_weights_are_the_ratio_truncated_at_the_cap_and_one_where_nothing_was_sampled():
    sampled = SampledLogps([torch.tensor([[-1.0, -2.0, -0.5]])], [torch.tensor([[True, True, False]])])
    policy = torch.tensor([[-1.5, -1.0, -3.0]], requires_grad=True)
    weights = SamplingCorrection(sampled, cap=2.0).weights(0, policy)
    assert weights[0].tolist() == pytest.approx([math.exp(-0.5), 2.0, 1.0])  # e^-0.5; e^1 capped at 2; not sampled
    assert not weights.requires_grad  # detached, as TRL's: the correction scales the gradient, has none of its own


def test_the_corrected_loss_and_its_gradient_by_hand():
    """NeMo's `grpo` aggregation (each rollout's mean over its frames, then the mean) of -A * w on a rollout
    batch's first update, w = min(p_policy / p_sampling, C): the loss and d loss / d logits by hand."""
    from nemo.collections.tts.models.magpietts_preference_optimization import MagpieTTSModelOnlinePO

    torch.manual_seed(0)
    rollouts, frames, codebooks, vocabulary, cap = 3, 4, 2, 5, 1.5
    model = SimpleNamespace(
        frame_stacking_factor=1,
        num_audio_codebooks=codebooks,
        num_all_tokens_per_codebook=vocabulary,
        cfg=SimpleNamespace(grpo_beta=0.0),
        device=torch.device("cpu"),
    )
    model._get_per_token_logps = MagpieTTSModelOnlinePO._get_per_token_logps.__get__(model)
    logits = torch.randn(rollouts, frames, codebooks * vocabulary, requires_grad=True)
    targets = torch.randint(0, vocabulary, (rollouts, codebooks, frames))
    lengths = torch.tensor([4, 3, 2])  # teacher-forced frames per rollout (codes + the end token)
    mask = (torch.arange(frames)[None, :] < lengths[:, None]).float()
    loss_mask = mask.unsqueeze(1).expand(rollouts, codebooks, frames)
    advantages = torch.tensor([1.0, -0.5, -0.5])
    sampling = torch.randn(rollouts, codebooks, frames - 1).clamp(max=-0.05)  # the codes' draws, end token not
    sampled = SampledLogps.by_slot(sampling, lengths - 1, targets, 1, codebooks)
    result = magpietts_policy_loss(
        model,
        {"logits": logits, "loss_mask": loss_mask},
        None,
        targets,
        advantages,
        torch.ones(rollouts),
        "logits",
        LOSS_TYPES["grpo"],
        LossContext(max_decoder_steps=frames),
        sampling_correction=SamplingCorrection(sampled, cap),
    )

    expected, surrogate, capped = 0.0, 0.0, 0
    for c in range(codebooks):
        logps = logits[:, :, c * vocabulary : (c + 1) * vocabulary].log_softmax(-1)
        for b in range(rollouts):
            for t in range(int(lengths[b])):
                logp = logps[b, t, targets[b, c, t]]
                if t < int(lengths[b]) - 1:  # a sampled code
                    ratio = math.exp(float(logp) - float(sampling[b, c, t]))
                    weight = min(ratio, cap)
                    capped += ratio > cap
                else:
                    weight = 1.0  # the end-of-speech frame
                share = 1.0 / (int(lengths[b]) * rollouts * codebooks)
                expected += -float(advantages[b]) * weight * share
                surrogate = surrogate + (-float(advantages[b]) * weight * share) * logp
    assert 0 < capped < rollouts * codebooks * 2  # the cap bites on some frames, not all: both branches tested
    assert float(result.loss) == pytest.approx(expected, rel=1e-6)
    (loss_gradient,) = torch.autograd.grad(result.loss, logits)
    (hand_gradient,) = torch.autograd.grad(surrogate, logits)
    torch.testing.assert_close(loss_gradient, hand_gradient, rtol=1e-5, atol=1e-7)


def test_the_settings_read_the_switch_and_refuse_what_records_no_sampling_log_probs(tiny_config):
    from nemo_ext.errors import ConfigError

    assert ONLINE_PO.parse(tiny_config("online_po_tiny")).algorithm.importance_sampling_cap is None
    parsed = ONLINE_PO.parse(
        tiny_config("online_po_tiny", "model.importance_sampling_correction=true", "model.importance_sampling_cap=3")
    )
    assert parsed.algorithm.importance_sampling_cap == 3.0
    refusals = {
        ("model.importance_sampling_cap=0",): r"^model\.importance_sampling_cap=0 is invalid; allowed: a number > 0",
        (
            "model.importance_sampling_correction=yes",
        ): r"^model\.importance_sampling_correction='yes' is invalid; allowed: true or false$",
        ("model.importance_sampling_correction=true", "model.rollout_decoder=nemo_cached"): (
            r"^model\.importance_sampling_correction=True is invalid; allowed: false with "
            r"model\.rollout_decoder=nemo_cached \(only incremental records each sampled code's log-prob\)$"
        ),
        ("model.importance_sampling_correction=true", "model.use_local_transformer_prob=0.5"): (
            r"^model\.importance_sampling_correction=True is invalid; allowed: false with "
            r"model\.use_local_transformer_prob=0\.5"
        ),
    }
    for overrides, message in refusals.items():
        with pytest.raises(ConfigError, match=message):
            ONLINE_PO.parse(tiny_config("online_po_tiny", *overrides))


def first_step_grad_norm(tiny_config, tmp_path, name, *overrides) -> float:
    ONLINE_PO.run(
        tiny_config("online_po_tiny", "trainer.max_steps=1", f"exp_manager.exp_dir={tmp_path / name}", *overrides)
    )
    [run_file] = find_offline_runs(str(tmp_path / name))
    [row] = [row for row in read_offline_run(run_file).history if "learning/grad_norm" in row]
    return row["learning/grad_norm"]


@pytest.mark.e2e
def test_a_grpo_step_weights_its_loss_by_the_truncated_ratio(tiny_config, tmp_path):
    """The same seeded rollouts (the correction changes nothing before the loss), the first step's gradient before
    clipping (no KL gradient at equal weights). A cap of 1e-3 weighs every sampled frame's policy term by at most
    1e-3: what is left is each rollout's end-of-speech frame, which no draw produced and which weighs 1 (a large
    share of the tiny default's short rollouts). A cap that never bites changes the gradient too (each frame by its
    own ratio, about 0.5 on average at the tiny default's temperature 0.7)."""
    plain = first_step_grad_norm(tiny_config, tmp_path, "plain")
    on = ("model.importance_sampling_correction=true",)
    tight = first_step_grad_norm(tiny_config, tmp_path, "tight", *on, "model.importance_sampling_cap=0.001")
    loose = first_step_grad_norm(tiny_config, tmp_path, "loose", *on, "model.importance_sampling_cap=1e9")
    assert plain > 0
    assert tight < 0.5 * plain, (tight, plain)
    assert loose != pytest.approx(plain, rel=1e-3), (loose, plain)
