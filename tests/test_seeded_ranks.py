"""A seeded run on two real ranks (srun's environment, DDP over gloo): one epoch hands every item to exactly one rank,
read from what the model received, and the ranks still draw different rollouts. With each rank seeded seed + rank,
Lightning's DistributedSampler shuffled differently on each rank: some items twice, others never."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from magpie_testing import REPO, free_port, slurm_env

pytestmark = [pytest.mark.e2e, pytest.mark.multiprocess]

WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight"]


def eight_item_manifest(tiny, path):
    with open(tiny.manifest) as f:
        base = [json.loads(line) for line in f if line.strip()]
    with open(path, "w") as f:
        for i, word in enumerate(WORDS):
            f.write(json.dumps({**base[i % len(base)], "text": f"{base[i % len(base)]['text']} {word}."}) + "\n")
    return [f"{base[i % len(base)]['text']} {word}." for i, word in enumerate(WORDS)]


def test_seeded_ranks_share_one_epoch_and_draw_different_rollouts(tiny, tmp_path):
    texts = eight_item_manifest(tiny, tmp_path / "eight.json")
    port = free_port()
    overrides = [
        f"tiny_root={tiny.root}",
        f"exp_manager.exp_dir={tmp_path / 'runs'}",
        f"data.train_manifest={tmp_path / 'eight.json'}",
        "data.batch_size=1",
        "seed=1234",
        "trainer.num_nodes=2",
        "trainer.devices=1",
        "trainer.max_steps=-1",
        "trainer.max_epochs=1",
    ]
    environment = {**os.environ, "PYTHONPATH": str(REPO / "tests")}
    ranks = []
    for rank in range(2):
        log = open(tmp_path / f"rank{rank}.log", "w")
        command = [sys.executable, str(REPO / "tests" / "two_rank_grpo_recorder.py"), str(tmp_path), *overrides]
        process = subprocess.Popen(
            command, cwd=tmp_path, env={**environment, **slurm_env(rank, 2, port)}, stdout=log, stderr=log
        )
        ranks.append(process)
    for rank, process in enumerate(ranks):
        assert process.wait(timeout=600) == 0, (tmp_path / f"rank{rank}.log").read_text()[-4000:]
    received = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]

    handed_out = [text for rank in received for step in rank for text in step["texts"]]
    assert sorted(handed_out) == sorted(texts), {
        rank: [step["texts"] for step in steps] for rank, steps in enumerate(received)
    }
    assert [len(steps) for steps in received] == [4, 4]
    # Different streams, so different rollouts, at every step (the data order alone is shared).
    for first, second in zip(*received):
        assert first["random_state"] != second["random_state"]
        assert first["rollouts"] != second["rollouts"]
