"""Preference pairs from scored DataGen samples: the selection of NeMo's
`scripts/magpietts/dpo/create_preference_pairs.py` (NeMo 3.0.0), as pure functions.

What is kept from NeMo's script:
- A group is the `group_size` samples of one text/context item. A group with an `<INVALID>` transcript is
  skipped.
- The others are Pareto-ranked on (CER lower, speaker similarity higher); within a front, lower CER first (then
  higher similarity).
- Pairs: `chosen_per_group: 1` is best vs worst; `2` is the top-2 x bottom-2 cross (up to 4 pairs).
- A pair is dropped when the rejected sample has a better CER or a better similarity than the chosen one, or
  when the two are equal on both.
- A pair is kept only when the chosen CER is under `cer_threshold` and both clips last
  `min_duration`..`max_duration`.
- Rewards: chosen 1. Rejected 1 - (Phi(z of the CER gap) + Phi(z of the similarity gap)), with z over the kept
  pairs (for RPO; < 1 always).

What is different, on purpose:
- Samples are matched to their text by the `item_id` DataGen writes into each metrics file (the manifest line).
  NeMo rebuilds the order from file names as `k*world_size + r`, which holds only for an unshuffled round-robin
  split across ranks.
- Validation takes whole items (all of an item's pairs, at least `val_pairs` pairs). NeMo's `val_size` counts
  lines, so an odd value splits a pair, and it splits per line, so one item's pairs could land on both sides.
- The shuffle is seeded; a gap with zero spread gives z = 0 (NeMo divides by zero).
- Clips shorter than the DPO stage's `data.min_duration` never reach it: with NeMo's pairs a filtered clip
  shifted every later pair by one line."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field

from nemo_ext.datagen_layout import INVALID_TRANSCRIPT


@dataclass(frozen=True)
class PairSettings:
    group_size: int = 6
    chosen_per_group: int = 1  # 1: best vs worst; 2: top-2 x bottom-2
    cer_threshold: float = 0.02  # chosen CER must be below this
    min_duration: float = 1.5  # both clips, seconds
    max_duration: float = 19.0
    val_pairs: int = 32
    seed: int = 0


@dataclass(frozen=True)
class Sample:
    """One scored generation: where its files are and what DataGen measured."""

    item_id: int  # the input manifest line (0-based) it was generated for
    audio_filepath: str
    codes_path: str | None
    cer: float
    wer: float
    similarity: float
    duration: float
    pred_transcript: str
    gt_transcript: str


@dataclass
class PairYield:
    groups: int = 0
    skipped_invalid: int = 0
    candidate_pairs: int = 0
    dropped: Counter = field(default_factory=Counter)  # rule -> pairs
    kept: int = 0
    chosen_cer_mean: float = float("nan")
    rejected_cer_mean: float = float("nan")
    chosen_similarity_mean: float = float("nan")
    rejected_similarity_mean: float = float("nan")

    def as_dict(self) -> dict:
        return {
            "groups": self.groups,
            "skipped_invalid": self.skipped_invalid,
            "candidate_pairs": self.candidate_pairs,
            **{f"dropped_{rule}": count for rule, count in sorted(self.dropped.items())},
            "kept": self.kept,
            "chosen_cer_mean": self.chosen_cer_mean,
            "rejected_cer_mean": self.rejected_cer_mean,
            "chosen_similarity_mean": self.chosen_similarity_mean,
            "rejected_similarity_mean": self.rejected_similarity_mean,
        }


@dataclass(frozen=True)
class Pair:
    chosen: Sample
    rejected: Sample
    rejected_reward: float


def pareto_order(samples: list[Sample]) -> list[Sample]:
    """Best first: Pareto fronts on (CER lower, similarity higher); within a front by CER, then similarity."""

    def dominated(a: Sample, b: Sample) -> bool:  # b dominates a
        return b.cer <= a.cer and b.similarity >= a.similarity and (b.cer, b.similarity) != (a.cer, a.similarity)

    remaining, ordered = list(samples), []
    while remaining:
        front = [a for a in remaining if not any(dominated(a, b) for b in remaining if b is not a)]
        ordered += sorted(front, key=lambda s: (s.cer, -s.similarity))
        remaining = [s for s in remaining if all(s is not f for f in front)]
    return ordered


def _standard_normal_cdf(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def _z_scores(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    return [0.0 if std == 0 else (v - mean) / std for v in values]


def select_pairs(groups: list[list[Sample]], settings: PairSettings) -> tuple[list[Pair], PairYield]:
    """Pairs from groups of scored samples (each group: one item's `group_size` generations)."""
    report = PairYield(groups=len(groups))
    ranks = range(settings.chosen_per_group)
    candidates: list[tuple[Sample, Sample]] = []
    for group in groups:
        if any(s.pred_transcript == INVALID_TRANSCRIPT for s in group):
            report.skipped_invalid += 1
            continue
        ordered = pareto_order(group)
        for best in ranks:
            for worst in ranks:
                chosen, rejected = ordered[best], ordered[len(ordered) - 1 - worst]
                report.candidate_pairs += 1
                rule = _drop_rule(chosen, rejected, settings)
                if rule:
                    report.dropped[rule] += 1
                else:
                    candidates.append((chosen, rejected))
    if not candidates:
        return [], report
    cer_z = _z_scores([r.cer - c.cer for c, r in candidates])
    similarity_z = _z_scores([c.similarity - r.similarity for c, r in candidates])
    pairs = [
        Pair(chosen, rejected, 1.0 - (_standard_normal_cdf(zc) + _standard_normal_cdf(zs)))
        for (chosen, rejected), zc, zs in zip(candidates, cer_z, similarity_z)
    ]
    report.kept = len(pairs)
    report.chosen_cer_mean = sum(p.chosen.cer for p in pairs) / len(pairs)
    report.rejected_cer_mean = sum(p.rejected.cer for p in pairs) / len(pairs)
    report.chosen_similarity_mean = sum(p.chosen.similarity for p in pairs) / len(pairs)
    report.rejected_similarity_mean = sum(p.rejected.similarity for p in pairs) / len(pairs)
    return pairs, report


def _drop_rule(chosen: Sample, rejected: Sample, settings: PairSettings) -> str | None:
    """Why NeMo's script would not keep this pair (the rule's name), or None. Checked in NeMo's order."""
    if rejected.cer < chosen.cer:
        return "rejected_better_cer"
    if rejected.similarity > chosen.similarity:
        return "rejected_better_similarity"
    if (rejected.cer - chosen.cer) + (chosen.similarity - rejected.similarity) <= 0:
        return "no_gap"
    if not chosen.cer < settings.cer_threshold:
        return "chosen_cer_above_threshold"
    durations = (chosen.duration, rejected.duration)
    if min(durations) < settings.min_duration or max(durations) > settings.max_duration:
        return "duration"
    return None


def split_train_validation(pairs: list[Pair], settings: PairSettings) -> tuple[list[Pair], list[Pair]]:
    """Split by item: every pair of one text/context item lands on the same side, so the validation reward accuracy
    measures items the policy never trained on. The pairs are shuffled (seeded); the items of the first ones go to
    validation, whole, until it holds at least `val_pairs` pairs (with top-2 x bottom-2 pairs, up to 3 more than
    asked); the rest train, in the shuffled order. With one pair per item this is the per-pair split it replaced."""
    shuffled = list(pairs)
    random.Random(settings.seed).shuffle(shuffled)
    pairs_of_item = Counter(pair.chosen.item_id for pair in pairs)
    validation_items: set[int] = set()
    held = 0
    for pair in shuffled:
        if held >= settings.val_pairs:
            break
        if pair.chosen.item_id not in validation_items:
            validation_items.add(pair.chosen.item_id)
            held += pairs_of_item[pair.chosen.item_id]
    train = [pair for pair in shuffled if pair.chosen.item_id not in validation_items]
    validation = [pair for pair in shuffled if pair.chosen.item_id in validation_items]
    return train, validation
