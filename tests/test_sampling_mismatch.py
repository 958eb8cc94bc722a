"""How far the rollouts' sampling distribution is from the one the update scores them under: TRL's
`sampling/sampling_logp_difference/*` and `sampling/importance_sampling_ratio/*`, from the log-probs our rollout
decoder records, against a hand computation and read back from the offline W&B run."""

from __future__ import annotations

import math

import pytest
import torch

from nemo_ext.stages import ONLINE_PO
from nemo_ext.telemetry.learning import sampling_mismatch
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

KEYS = (
    "sampling/sampling_logp_difference/mean",
    "sampling/sampling_logp_difference/max",
    "sampling/importance_sampling_ratio/min",
    "sampling/importance_sampling_ratio/mean",
    "sampling/importance_sampling_ratio/max",
)


def test_the_figures_by_hand():
    sampling = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.1, -9.0]])
    policy = torch.tensor([[-1.5, -1.0, -0.5], [-2.0, -0.1, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])  # the last code is past its rollout's end
    figures = sampling_mismatch(sampling, policy, mask)
    # differences: 0.5, 1.0, 0, 1.0, 0 -> mean 0.5, max 1.0; ratios exp(policy - sampling): e^-0.5, e^1, 1, e^1, 1
    assert figures["sampling/sampling_logp_difference/mean"] == pytest.approx(0.5)
    assert figures["sampling/sampling_logp_difference/max"] == pytest.approx(1.0)
    assert figures["sampling/importance_sampling_ratio/min"] == pytest.approx(math.exp(-0.5))
    assert figures["sampling/importance_sampling_ratio/max"] == pytest.approx(math.e)
    expected_mean = (math.exp(-0.5) + 2 * math.e + 2) / 5
    assert figures["sampling/importance_sampling_ratio/mean"] == pytest.approx(expected_mean)
    assert sampling_mismatch(sampling, policy, torch.zeros_like(mask)) == {}


def logged(tiny_config, tmp_path, name, *overrides) -> list[dict]:
    ONLINE_PO.run(
        tiny_config("online_po_tiny", "trainer.max_steps=2", f"exp_manager.exp_dir={tmp_path / name}", *overrides)
    )
    [run_file] = find_offline_runs(str(tmp_path / name))
    return [row for row in read_offline_run(run_file).history if "learning/kl" in row]


@pytest.mark.e2e
def test_the_mismatch_is_logged_every_step_and_shrinks_when_sampling_at_temperature_one(tiny_config, tmp_path):
    """The tiny default samples at temperature 0.7 with top-k 8, in eval mode, under the inference prior; the
    update scores at temperature 1 over every code. At temperature 1 (same top-k) the two are closer."""
    default = logged(tiny_config, tmp_path, "t07")
    assert len(default) == 2
    for row in default:
        assert all(key in row for key in KEYS), sorted(row)
        assert 0.0 <= row[KEYS[0]] <= row[KEYS[1]]
        assert row[KEYS[2]] <= row[KEYS[3]] <= row[KEYS[4]]
        assert row[KEYS[0]] > 0.0  # temperature 0.7 against 1: never the same distribution
    warm = logged(tiny_config, tmp_path, "t10", "model.inference_temperature=1.0")
    assert sum(row[KEYS[0]] for row in warm) < sum(row[KEYS[0]] for row in default)


@pytest.mark.e2e
def test_nemos_decoders_record_no_sampling_log_probs(tiny_config, tmp_path):
    rows = logged(tiny_config, tmp_path, "nemo", "model.rollout_decoder=nemo")
    assert len(rows) == 2 and not any(key in row for row in rows for key in KEYS)


def test_scoring_under_the_rollouts_temperature_and_top_k_by_hand():
    from nemo.collections.tts.modules.magpietts_modules import SpecialAudioToken

    from nemo_ext.grpo.policy_loss import RolloutScoring

    codebook_size = 6
    special = SpecialAudioToken.get_forbidden_tokens(codebook_size, forbid_audio_eos=False)
    eos = SpecialAudioToken.get_index(SpecialAudioToken.AUDIO_EOS, codebook_size)
    vocabulary = codebook_size + len(list(SpecialAudioToken))
    logits = torch.tensor([[[3.0, 1.0, 2.0, 0.0, -1.0, 0.5] + [5.0] * (vocabulary - codebook_size)]])
    labels = torch.tensor([[4]])  # the code the rollout drew, outside the top 3 of these teacher-forced logits
    scored = RolloutScoring(temperature=0.5, topk=3, codebook_size=codebook_size).logits(logits, labels)[0, 0]
    # Divided by 0.5; special tokens but EOS out; the top 3 (EOS 10, code 0 6, code 2 4) kept; the label kept.
    expected = torch.full((vocabulary,), float("-inf"))
    expected[[0, 2]] = torch.tensor([6.0, 4.0])
    expected[eos] = 10.0
    expected[4] = -2.0
    assert torch.equal(scored, expected)
    assert all(scored[token] == float("-inf") for token in special)


def test_logprob_temperature_takes_sampling_or_one(tiny_config):
    from nemo_ext.errors import ConfigError

    assert ONLINE_PO.parse(tiny_config("online_po_tiny")).algorithm.logprob_temperature == 1.0
    parsed = ONLINE_PO.parse(tiny_config("online_po_tiny", "model.logprob_temperature=sampling"))
    assert parsed.algorithm.logprob_temperature == "sampling"
    for bad in ("0.7", "warm", "true"):
        with pytest.raises(ConfigError, match=r"^model\.logprob_temperature=\S+ is invalid; allowed: sampling or 1.0$"):
            ONLINE_PO.parse(tiny_config("online_po_tiny", f"model.logprob_temperature={bad}"))


@pytest.mark.e2e
def test_scoring_at_the_sampling_temperature_narrows_the_mismatch(tiny_config, tmp_path):
    ones = logged(tiny_config, tmp_path, "one")
    matched = logged(tiny_config, tmp_path, "sampling", "model.logprob_temperature=sampling")
    assert sum(row[KEYS[0]] for row in matched) < sum(row[KEYS[0]] for row in ones)
