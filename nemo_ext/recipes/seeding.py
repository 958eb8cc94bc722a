"""A seeded run's random streams across ranks: one data order for all ranks, one random stream per rank.

Lightning seeds its DistributedSampler with PL_GLOBAL_SEED (data_connector.py), which `seed_everything` sets, and
DDP's set-up re-seeds every rank from it (`reset_seed`). Seeding each rank with `seed + rank` therefore gave each
rank its own permutation of the data, of which it took its slice: some items were trained on twice per epoch,
others never. Here every rank is seeded with `seed` (same data order, same model build), and after DDP's re-seed
each rank other than 0 moves to its own stream `seed + rank`, so ranks still draw different rollouts. Rank 0's
stream, and a one-rank run's, are what they were."""

from __future__ import annotations

import random

from lightning.pytorch import Callback, seed_everything


def seed_run(seed: int) -> None:
    """Every rank, before the trainer and the model are built: PL_GLOBAL_SEED = seed (the sampler's seed)."""
    seed_everything(seed, verbose=False)


def seed_this_process(seed: int) -> None:
    """Python's, NumPy's and torch's generators (CUDA's included), leaving PL_GLOBAL_SEED (the data order) alone."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class RankRandomStreams(Callback):
    """After DDP's re-seed (the strategy's set-up runs before the `setup` hooks): rank r > 0 draws from seed + r."""

    def __init__(self, seed: int):
        self.seed = seed

    def setup(self, trainer, pl_module, stage: str) -> None:
        if trainer.global_rank > 0:
            seed_this_process(self.seed + trainer.global_rank)
