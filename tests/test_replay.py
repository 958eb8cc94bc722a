"""Several updates per rollout batch at the published randomness (dropout 0.1 everywhere, context drop 0.1, decoder
input corruption on): each later update replays the first update's random draws, and the reference is matched to
them. With the learning rate at 0 (weights never change) every ratio is then exactly 1, nothing is clipped and the KL
is 0; with fresh draws (replay off) the clip bites on noise. Read back from the offline W&B run."""

from __future__ import annotations

import pytest
from magpie_testing import PUBLISHED_STOCHASTICITY

from nemo_ext.stages import ONLINE_PO
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.e2e

UNCHANGED_WEIGHTS = (
    *PUBLISHED_STOCHASTICITY,
    "+model.decoder_input_dropout_prob=0.1",  # NeMo's decoder-input corruption: one more kind of draw
    "model.num_iterations=2",
    "model.optim.lr=0.0",
    "trainer.max_steps=6",  # 3 rollout batches
)


def learning_figures(tiny_config, tmp_path, *overrides):
    ONLINE_PO.run(tiny_config("online_po_tiny", *UNCHANGED_WEIGHTS, *overrides))
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    rows = [row for row in read_offline_run(run_file).history if "learning/importance_ratio_last" in row]
    assert len(rows) == 3
    return rows


def test_later_updates_replay_the_first_updates_draws(tiny_config, tmp_path):
    rows = learning_figures(tiny_config, tmp_path)
    for row in rows:
        assert row["learning/importance_ratio_last"] == 1.0
        assert row["learning/clip_ratio"] == 0.0
        assert row["learning/kl"] == 0.0


def test_without_replay_the_clip_bites_on_dropout_noise(tiny_config, tmp_path):
    """The control: the same run drawing anew in every forward (what replay_random_draws=false keeps)."""
    rows = learning_figures(tiny_config, tmp_path, "model.replay_random_draws=false")
    assert any(row["learning/importance_ratio_last"] != 1.0 for row in rows)
    assert max(row["learning/clip_ratio"] for row in rows) > 0.01
    assert max(row["learning/kl"] for row in rows) > 0.0
