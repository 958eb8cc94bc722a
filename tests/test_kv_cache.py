"""Rollouts with NeMo's decoder KV cache (`model.use_kv_cache_during_online_po: true`) against rollouts without it
(NeMo's default), on the tiny fixtures: the same seed must give the same codes, greedy and sampled, or the cache
changes the experiment and cannot be a default."""

from __future__ import annotations

import pytest
import torch
from nemo.collections.tts.models import magpietts_preference_optimization as upstream

from nemo_ext.stages import ONLINE_PO

pytestmark = pytest.mark.e2e


def rollouts(tiny_config, monkeypatch, *overrides) -> tuple[list[torch.Tensor], set[bool]]:
    """The codes of every rollout of a 2-step seeded GRPO run, each cut to its length, and whether the decoder's
    KV cache was on during the rollouts (NeMo's flag, read inside the rollout)."""
    seen, cache_on = [], set()
    original = upstream.MagpieTTSModelOnlinePO.generate_and_reward

    def recording(self, batch, n, *args, **kwargs):
        cache_on.add(bool(self.use_kv_cache_for_inference))
        output = original(self, batch, n, *args, **kwargs)
        codes, lengths = output["predicted_codes"].cpu(), output["predicted_codes_lens"].cpu()
        seen.extend(codes[i, :, : lengths[i]].clone() for i in range(codes.shape[0]))
        return output

    monkeypatch.setattr(upstream.MagpieTTSModelOnlinePO, "generate_and_reward", recording)
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=2", "seed=7", *overrides))
    return seen, cache_on


@pytest.mark.parametrize("decoding", [["model.inference_topk=1"], []], ids=["greedy", "sampled-seeded"])
def test_rollouts_with_the_kv_cache_equal_rollouts_without(tiny_config, monkeypatch, decoding):
    without, cache_off = rollouts(tiny_config, monkeypatch, "model.use_kv_cache_during_online_po=false", *decoding)
    monkeypatch.undo()
    with_cache, cache_on = rollouts(tiny_config, monkeypatch, "model.use_kv_cache_during_online_po=true", *decoding)
    assert (cache_off, cache_on) == ({False}, {True})  # the key reached the decoder
    assert len(without) == len(with_cache) > 0
    lengths = [(a.shape[-1], b.shape[-1]) for a, b in zip(without, with_cache, strict=True)]
    assert all(a == b for a, b in lengths), lengths
    differing = [i for i, (a, b) in enumerate(zip(without, with_cache, strict=True)) if not torch.equal(a, b)]
    assert differing == [], f"{len(differing)} of {len(without)} rollouts differ"
