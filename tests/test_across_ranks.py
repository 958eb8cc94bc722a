"""Figures that span ranks, on two real ranks (torchrun, gloo): TRL's batch reward scaling and dapo's token mean
equal a single computation over the union of both ranks' inputs, done here by hand; the sampling figures are the
ranks' mean, their /min and /max the extremes over both ranks; DataGen's per-rank files are
named by the global rank torchrun gives; the global rank is read from each launcher's environment."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from magpie_testing import REPO, free_port

from nemo_ext.datagen_layout import AUDIO_DIR, ITEM_ID_KEY, ITEMS_MANIFEST, METRICS_SUFFIX
from nemo_ext.stages.stage import rank_from_environment

pytestmark = pytest.mark.multiprocess


def datagen_folder(root):
    """A DataGen run folder with 5 items, of which items 0 and 3 are complete."""
    (root / "state").mkdir(parents=True)
    (root / AUDIO_DIR).mkdir()
    with open(root / ITEMS_MANIFEST, "w") as f:
        f.writelines(json.dumps({"text": f"item {i}", ITEM_ID_KEY: i}) + "\n" for i in range(5))
    for item in (0, 3):
        (root / AUDIO_DIR / f"predicted_audioRank0_{item}{METRICS_SUFFIX}").write_text(json.dumps({"item_id": item}))
    return root


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    folder = datagen_folder(tmp_path_factory.mktemp("datagen"))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        str(REPO / "tests" / "two_rank_figures.py"),
        str(out),
        str(folder),
    ]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return ranks, folder


def by_hand_batch_advantages(rewards_per_rank, group):
    union = [reward for rank in rewards_per_rank for reward in rank]
    std = float(np.sqrt(np.mean((np.array(union) - np.mean(union)) ** 2)))  # population std, as np.std
    advantages = []
    for rewards in rewards_per_rank:
        mine = []
        for start in range(0, len(rewards), group):
            members = rewards[start : start + group]
            mine += [(reward - sum(members) / group) / (std + 1e-4) for reward in members]
        advantages.append(mine)
    return advantages


def test_batch_reward_scaling_divides_by_the_std_of_every_ranks_rewards(two_ranks):
    from two_rank_figures import GROUP, REWARDS

    ranks, _ = two_ranks
    expected = by_hand_batch_advantages([REWARDS[0], REWARDS[1]], GROUP)
    for rank in range(2):
        assert ranks[rank]["magpietts_batch_advantages"] == pytest.approx(expected[rank], rel=1e-6)
        assert ranks[rank]["easy_batch_advantages"] == pytest.approx(expected[rank], rel=1e-12)
    # The rank's own std would differ: the test tells the two apart.
    own = by_hand_batch_advantages([REWARDS[0]], GROUP)[0]
    assert own != pytest.approx(expected[0], rel=1e-3)


def test_dapo_is_the_token_mean_over_both_ranks(two_ranks):
    from two_rank_figures import LENGTHS, VALUES

    ranks, _ = two_ranks
    masked_sum = {r: sum(sum(row[:n]) for row, n in zip(VALUES[r], LENGTHS[r])) for r in range(2)}
    tokens = sum(sum(LENGTHS[r]) for r in range(2))
    # d/dw of the job's per-token mean of w * value (w = 1), after DDP's average over ranks.
    assert ranks[0]["dapo_gradient"] == ranks[1]["dapo_gradient"] == pytest.approx(sum(masked_sum.values()) / tokens)
    # Each rank's loss: its own sum over half the job's tokens; their mean is the job's per-token mean.
    for rank in range(2):
        assert ranks[rank]["dapo_loss"] == pytest.approx(masked_sum[rank] / (tokens / 2))
    assert np.mean([r["dapo_loss"] for r in ranks]) == pytest.approx(sum(masked_sum.values()) / tokens)


def test_the_sampling_figures_are_the_ranks_mean_and_the_extremes_over_every_rank(two_ranks):
    """By hand: rank 0's codes differ by 0.5, 1.0, 0 (its 4th is past the rollout's end), rank 1's by 2.0 and 0."""
    ranks, _ = two_ranks
    expected = {
        "sampling/sampling_logp_difference/mean": (1.5 / 3 + 2.0 / 2) / 2,
        "sampling/sampling_logp_difference/max": 2.0,
        "sampling/importance_sampling_ratio/min": math.exp(-0.5),
        "sampling/importance_sampling_ratio/mean": ((math.exp(-0.5) + math.e + 1) / 3 + (math.exp(2) + 1) / 2) / 2,
        "sampling/importance_sampling_ratio/max": math.exp(2),
    }
    for rank in range(2):
        assert ranks[rank]["sampling_figures"] == pytest.approx(expected, rel=1e-12)


def test_each_global_rank_writes_its_own_datagen_manifest(two_ranks):
    ranks, folder = two_ranks
    assert [r["rank_from_environment"] for r in ranks] == [0, 1]
    assert [r["datagen_todo"] for r in ranks] == ["items_todo_rank0.json", "items_todo_rank1.json"]
    assert [r["datagen_done"] for r in ranks] == [2, 2]
    for rank in range(2):
        lines = (folder / "state" / f"items_todo_rank{rank}.json").read_text().splitlines()
        assert [json.loads(line)[ITEM_ID_KEY] for line in lines] == [1, 2, 4]
    assert not list((folder / "state").glob("*.tmp"))


@pytest.mark.parametrize(
    ("environment", "devices_per_node", "rank"),
    [
        ({}, 1, 0),
        ({"RANK": "5", "LOCAL_RANK": "1"}, 8, 5),  # torchrun
        ({"SLURM_PROCID": "3", "SLURM_LOCALID": "1"}, 2, 3),  # srun
        ({"LOCAL_RANK": "1"}, 4, 1),  # Lightning's own launcher, one node
        ({"LOCAL_RANK": "2", "NODE_RANK": "1"}, 4, 6),  # ... on the second node
    ],
    ids=["none", "torchrun", "srun", "lightning", "lightning-node-1"],
)
def test_the_global_rank_comes_from_each_launchers_environment(monkeypatch, environment, devices_per_node, rank):
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert rank_from_environment(devices_per_node) == rank
