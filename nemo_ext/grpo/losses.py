"""GRPO loss types: how one codebook slot's per-token loss (items x frames, with its mask) becomes a scalar, as NeMo
aggregates its two types per codebook and frame-stacking slot. The names validation accepts are the ones registered
here, so an accepted name always runs: NeMo's own step for NeMo's types where nothing else changes, this project's
policy-loss loop (nemo_ext/grpo/policy_loss.py) otherwise. TRL's names and normalizations (trl GRPOConfig.loss_type).

Nothing here imports torch: the aggregations are called with tensors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

MAGPIETTS = "MagpieTTSModel"
EASY_MAGPIETTS = "EasyMagpieTTSModel"


@dataclass(frozen=True)
class LossContext:
    """What an aggregation may need besides the slot's tensors."""

    max_decoder_steps: int
    # Tokens (mask sum) of the whole batch over all ranks, divided by the number of ranks: DDP averages the ranks'
    # gradients, so a rank dividing its sum by this gives the global per-token mean (DAPO's normalization).
    tokens_per_rank: Callable[[object], object] | None = None


@dataclass(frozen=True)
class GRPOLossType:
    name: str
    summary: str
    aggregate: Callable  # (per_token_loss, mask, LossContext) -> scalar tensor
    nemo_native: tuple[str, ...] = ()  # model families whose NeMo 3.0.0 class implements it
    # Families whose GRPO step can run it: NeMo's (nemo_native), or MagpieTTS through this project's loss loop.
    families: tuple[str, ...] = (MAGPIETTS,)


LOSS_TYPES: dict[str, GRPOLossType] = {}


def register_loss_type(loss: GRPOLossType) -> GRPOLossType:
    if loss.name in LOSS_TYPES and LOSS_TYPES[loss.name] is not loss:
        raise ValueError(f"GRPO loss type {loss.name!r} is registered already")
    LOSS_TYPES[loss.name] = loss
    return loss


def loss_type_names(family: str) -> tuple[str, ...]:
    """The loss types a model family's GRPO step runs (validation accepts exactly these)."""
    return tuple(name for name, loss in LOSS_TYPES.items() if family in loss.families + loss.nemo_native)


def _per_sequence_mean(per_token_loss, mask, context):
    # NeMo's `grpo` (MagpieTTSModelOnlinePO), op for op: each rollout's mean over its own frames, then the mean.
    return ((per_token_loss * mask).sum(dim=1) / mask.sum(dim=1)).mean()


def _fixed_length(per_token_loss, mask, context):
    # NeMo's `dr_grpo`, op for op: a constant denominator (rollouts x max_decoder_steps), no length bias.
    total_tokens = per_token_loss.shape[0] * context.max_decoder_steps
    return (per_token_loss * mask).sum() / total_tokens


def _batch_token_mean(per_token_loss, mask, context):
    # TRL's `bnpo`: the mean over every frame of the rank's batch.
    return (per_token_loss * mask).sum() / mask.sum().clamp(min=1.0)


def _global_token_mean(per_token_loss, mask, context):
    # TRL's `dapo`: the mean over every frame of the global batch (all ranks).
    tokens = context.tokens_per_rank(mask) if context.tokens_per_rank is not None else mask.sum()
    return (per_token_loss * mask).sum() / tokens.clamp(min=1.0)


GRPO = register_loss_type(
    GRPOLossType(
        "grpo",
        "each rollout's per-frame mean, averaged over rollouts (longer rollouts weigh less per frame)",
        _per_sequence_mean,
        nemo_native=(MAGPIETTS, EASY_MAGPIETTS),
    )
)
DR_GRPO = register_loss_type(
    GRPOLossType(
        "dr_grpo",
        "the sum over frames divided by rollouts x max_decoder_steps (no length bias)",
        _fixed_length,
        nemo_native=(MAGPIETTS, EASY_MAGPIETTS),
    )
)
BNPO = register_loss_type(
    GRPOLossType("bnpo", "the mean over every frame of the rank's batch (TRL's bnpo)", _batch_token_mean)
)
DAPO = register_loss_type(
    GRPOLossType("dapo", "the mean over every frame of the global batch, all ranks (TRL's dapo)", _global_token_mean)
)
