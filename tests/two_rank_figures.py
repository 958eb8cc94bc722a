"""One rank of a two-rank job started by torchrun (tests/test_across_ranks.py): this project's figures that span
ranks, computed by the functions the GRPO and DataGen stages call, written to <out>/rank<R>.json for the test to
compare with a hand computation over both ranks' inputs.

    python -m torch.distributed.run --nproc_per_node 2 tests/two_rank_figures.py <out> <datagen run folder>
"""

from __future__ import annotations

import json
import os
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist

from nemo_ext.grpo.across_ranks import rewards_of_all_ranks
from nemo_ext.grpo.advantages import easy_magpietts_advantages
from nemo_ext.grpo.losses import LOSS_TYPES
from nemo_ext.grpo.reward_shaping import apply_to_magpietts_rewards
from nemo_ext.models.learning_health import _extremes_across_ranks
from nemo_ext.models.policy_updates import PolicyUpdates
from nemo_ext.recipes.offline_po_datagen import items_still_to_generate
from nemo_ext.stages.stage import rank_from_environment
from nemo_ext.telemetry.learning import sampling_mismatch

GROUP = 2
# Different counts per rank (a short last batch) and different spreads.
REWARDS = {0: [0.1, 0.5, 0.4, 0.9], 1: [0.9, 0.2, 0.3, 0.35, 0.8, 0.1]}
# Per-token values and rollout lengths (frames) per rank: different token counts.
VALUES = {0: [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 0.0]], 1: [[2.0, 2.0, 0.0, 0.0], [3.0, 1.0, 1.0, 0.0]]}
LENGTHS = {0: [4, 2], 1: [2, 3]}
# Each sampled code's log-prob under the rollout's distribution and the policy's, per rank (rank 1 holds the
# largest difference and ratio, rank 0 the smallest ratio); the last code of rank 0 is past its rollout's end.
SAMPLING_LOGPS = {0: [-1.0, -2.0, -0.5, -4.0], 1: [-3.0, -0.1]}
POLICY_LOGPS = {0: [-1.5, -1.0, -0.5, 0.0], 1: [-1.0, -0.1]}
SAMPLED = {0: [1, 1, 1, 0], 1: [1, 1]}


def main(out: str, datagen_folder: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    result = {"rank_from_environment": rank_from_environment()}

    # scale_rewards=batch, MagpieTTS: the path reward_shaping takes after NeMo's reward step.
    rewards = REWARDS[rank]
    output = {
        "metrics": [{"reward": reward, "codes_len": 10} for reward in rewards],
        "advantages": torch.zeros(len(rewards)),
    }
    apply_to_magpietts_rewards(output, GROUP, {}, {}, "batch")
    result["magpietts_batch_advantages"] = output["advantages"].tolist()
    # ... and EasyMagpieTTS's.
    result["easy_batch_advantages"] = easy_magpietts_advantages(rewards, GROUP, "batch", rewards_of_all_ranks(rewards))

    # dapo: the loss context MagpieTTS's GRPO step builds, and a real DDP backward of the aggregated loss.
    weight = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(weight.weight)
    model = torch.nn.parallel.DistributedDataParallel(weight)
    values = torch.tensor(VALUES[rank])
    mask = (torch.arange(values.shape[1])[None, :] < torch.tensor(LENGTHS[rank])[:, None]).float()
    per_token_loss = model(values.unsqueeze(-1)).squeeze(-1)  # = weight * values
    context = PolicyUpdates._loss_context(SimpleNamespace(max_decoder_steps=11))
    loss = LOSS_TYPES["dapo"].aggregate(per_token_loss, mask, context)
    loss.backward()  # DDP averages the ranks' gradients
    result["dapo_loss"] = float(loss)
    result["dapo_gradient"] = float(weight.weight.grad)

    # The sampling figures: each rank's own, then reduced as GRPOLearningHealth._log_learning reduces them (the mean
    # of the ranks' figures by Lightning's strategy; /min and /max over every rank).
    figures = sampling_mismatch(
        torch.tensor(SAMPLING_LOGPS[rank]), torch.tensor(POLICY_LOGPS[rank]), torch.tensor(SAMPLED[rank])
    )
    keys = sorted(figures)
    means = torch.tensor([figures[k] for k in keys], dtype=torch.float64)
    dist.all_reduce(means)
    means /= dist.get_world_size()
    result["sampling_figures"] = dict(zip(keys, _extremes_across_ranks(keys, figures, means).tolist()))

    # DataGen: each global rank's manifest of the items still to generate, named by its rank.
    folder = SimpleNamespace(path=datagen_folder)
    todo, done = items_still_to_generate(folder, rank_from_environment())
    result["datagen_todo"] = os.path.basename(todo)
    result["datagen_done"] = done

    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(result, f)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
