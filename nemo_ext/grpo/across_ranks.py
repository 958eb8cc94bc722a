"""GRPO figures that span every rank of the job, where TRL reduces them across processes: the rewards behind
`scale_rewards: batch` (TRL gathers every process's rewards before its std) and `dapo`'s token count. Outside a
process group (one rank) they are the rank's own."""

from __future__ import annotations

import torch


def _ranks() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rewards_of_all_ranks(rewards: list[float]) -> list[float]:
    """Every rank's rewards, rank 0's first. Ranks may hold different counts (a short last batch), so they travel
    as objects."""
    if _ranks() == 1:
        return list(rewards)
    import torch.distributed as dist

    gathered: list[list[float] | None] = [None] * _ranks()
    dist.all_gather_object(gathered, [float(reward) for reward in rewards])
    return [reward for part in gathered for reward in part]


def tokens_per_rank(count: torch.Tensor) -> torch.Tensor:
    """The job's token count divided by the number of ranks. DDP averages the ranks' gradients, so a rank that
    divides its own loss sum by this gives the gradient of the job's per-token mean (TRL's dapo)."""
    if _ranks() == 1:
        return count
    import torch.distributed as dist

    total = count.detach().clone()
    dist.all_reduce(total)
    return total / _ranks()
