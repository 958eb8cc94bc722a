"""GRPO reward terms: each is a weight key, the per-item metric that holds its reward (in [0, 1]), the model it
scores with and the step-anatomy phase that scoring is timed as. NeMo computes its own terms (CER, speaker similarity,
PESQ for MagpieTTS, UTMOSv2 for EasyMagpieTTS) in its reward step; a term registered with a `score` function is
computed by this project after NeMo's, added with its weight, and the advantages are recomputed (advantages.py);
MagpieTTS only (EasyMagpieTTS's NeMo step leaves no point to add one, so registration refuses it).

Validation reads the weights from here: each >= 0 and not all zero, and a term that needs a switch (`use_pesq`)
has no weight without it. Nothing here imports torch."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nemo_ext.grpo.losses import EASY_MAGPIETTS, MAGPIETTS
from nemo_ext.telemetry import phases


@dataclass(frozen=True)
class RewardTerm:
    name: str
    weight_key: str  # model.<weight_key>
    metric: str  # per-item metrics key with the term's reward
    model: str  # what scores it (for messages and docs)
    phase: str  # the step-anatomy phase its scoring is timed as
    families: tuple[str, ...]
    default_weight: float = 0.0
    enabled_by: str | None = None  # a model.* switch without which the term contributes nothing
    # None: NeMo's reward step computes it. Else score(model, rollout) -> one reward in [0, 1] per rollout item.
    score: Callable | None = None

    @property
    def computed_by_nemo(self) -> bool:
        return self.score is None


REWARD_TERMS: dict[str, RewardTerm] = {}


def register_reward_term(term: RewardTerm) -> RewardTerm:
    if term.name in REWARD_TERMS and REWARD_TERMS[term.name] is not term:
        raise ValueError(f"reward term {term.name!r} is registered already")
    if term.score is not None and EASY_MAGPIETTS in term.families:
        # EasyMagpieTTS's GRPO step rewards, computes its advantages and updates inside NeMo's one training_step:
        # there is no point between its reward and its loss where a term of ours could be added. Accepted, it would
        # be declared, validated and timed, yet never scored.
        raise ValueError(
            f"reward term {term.name!r}: families may include {EASY_MAGPIETTS} only for terms NeMo scores "
            f"(score=None); this project scores its own terms for {MAGPIETTS} only"
        )
    REWARD_TERMS[term.name] = term
    return term


def unregister_reward_term(name: str) -> None:
    REWARD_TERMS.pop(name, None)


def reward_terms(family: str) -> tuple[RewardTerm, ...]:
    return tuple(term for term in REWARD_TERMS.values() if family in term.families)


BOTH_FAMILIES = (MAGPIETTS, EASY_MAGPIETTS)
CER = register_reward_term(
    RewardTerm(
        name="cer",
        weight_key="cer_reward_weight",
        metric="cer_reward",
        model="ASR (Whisper or NeMo ASR)",
        phase=phases.ASR,
        families=BOTH_FAMILIES,
        default_weight=0.5,
    )
)
SPEAKER_SIMILARITY = register_reward_term(
    RewardTerm(
        name="ssim",
        weight_key="ssim_reward_weight",
        metric="spk_similarity_reward",
        model="speaker verification",
        phase=phases.SPEAKER_VERIFICATION,
        families=BOTH_FAMILIES,
        default_weight=0.5,
    )
)
PESQ = register_reward_term(
    RewardTerm(
        name="pesq",
        weight_key="pesq_reward_weight",
        metric="pesq_reward",
        model="SQUIM (torchaudio)",
        phase=phases.REWARD,
        families=(MAGPIETTS,),
        enabled_by="use_pesq",
    )
)
UTMOS = register_reward_term(
    RewardTerm(
        name="utmos",
        weight_key="utmos_reward_weight",
        metric="utmos_reward",
        model="UTMOSv2",
        phase=phases.REWARD,
        families=(EASY_MAGPIETTS,),
        enabled_by="use_utmos",
    )
)
