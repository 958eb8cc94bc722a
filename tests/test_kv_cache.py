"""Rollouts with NeMo's decoder KV cache (`model.use_kv_cache_during_online_po: true`) against rollouts without it
(NeMo's default), on the tiny fixtures: the same seed must give the same codes, greedy and sampled, or the cache
changes the experiment and cannot be a default."""

from __future__ import annotations

import pytest
import torch

from nemo_ext.models import MagpieTTSOnlinePO
from nemo_ext.stages import ONLINE_PO

pytestmark = pytest.mark.e2e


def rollouts(tiny_config, monkeypatch, *overrides) -> tuple[list[torch.Tensor], set[bool]]:
    """The codes of every rollout of a 2-step seeded GRPO run, each cut to its length, and whether the decoder's
    KV cache was on during the rollouts (NeMo's flag, read inside the rollout)."""
    seen, cache_on = [], set()
    original = MagpieTTSOnlinePO.generate_and_reward

    def recording(self, batch, n, *args, **kwargs):
        cache_on.add(bool(self.use_kv_cache_for_inference))
        output = original(self, batch, n, *args, **kwargs)
        codes, lengths = output["predicted_codes"].cpu(), output["predicted_codes_lens"].cpu()
        seen.extend(codes[i, :, : lengths[i]].clone() for i in range(codes.shape[0]))
        return output

    monkeypatch.setattr(MagpieTTSOnlinePO, "generate_and_reward", recording)
    ONLINE_PO.run(tiny_config("online_po_tiny", "trainer.max_steps=2", "seed=7", *overrides))
    return seen, cache_on


@pytest.mark.parametrize("decoding", [["model.inference_topk=1"], []], ids=["greedy", "sampled-seeded"])
def test_rollouts_with_the_kv_cache_equal_rollouts_without(tiny_config, monkeypatch, decoding):
    nemo = "model.rollout_decoder=nemo"  # NeMo's infer_batch, as its flag sets the cache
    without, cache_off = rollouts(
        tiny_config, monkeypatch, nemo, "model.use_kv_cache_during_online_po=false", *decoding
    )
    monkeypatch.undo()
    with_cache, cache_on = rollouts(
        tiny_config, monkeypatch, nemo, "model.use_kv_cache_during_online_po=true", *decoding
    )
    assert (cache_off, cache_on) == ({False}, {True})  # the key reached the decoder
    assert len(without) == len(with_cache) > 0
    lengths = [(a.shape[-1], b.shape[-1]) for a, b in zip(without, with_cache, strict=True)]
    assert all(a == b for a, b in lengths), lengths
    differing = [i for i, (a, b) in enumerate(zip(without, with_cache, strict=True)) if not torch.equal(a, b)]
    assert differing == [], f"{len(differing)} of {len(without)} rollouts differ"


@pytest.mark.parametrize("decoding", [["model.inference_topk=1"], []], ids=["greedy", "sampled-seeded"])
def test_our_rollout_decoder_gives_the_rollouts_of_nemos_cache_in_a_grpo_run(tiny_config, monkeypatch, decoding):
    """The stage end to end: our decoder (the default) against NeMo's cached infer_batch, same seed."""
    cached, _ = rollouts(tiny_config, monkeypatch, "model.rollout_decoder=nemo_cached", *decoding)
    monkeypatch.undo()
    ours, _ = rollouts(tiny_config, monkeypatch, "model.rollout_decoder=incremental", *decoding)
    assert len(ours) == len(cached) > 0
    differing = [i for i, (a, b) in enumerate(zip(ours, cached, strict=True)) if not torch.equal(a, b)]
    assert differing == [], f"{len(differing)} of {len(ours)} rollouts differ"


def decoder_output(decoder, frames, text, priors, cached: bool) -> torch.Tensor:
    """The decoder's output over every frame, as NeMo's infer_batch gets it: with the cache, one call per decoding
    step over the whole prefix, step i under priors[i]; without, one call over every frame under the last prior."""
    decoder.reset_cache(use_cache=cached)
    text_mask = torch.ones(text.shape[:2], dtype=torch.bool)
    calls = range(1, frames.shape[1] + 1) if cached else [frames.shape[1]]
    for length in calls:
        mask = torch.ones(1, length, dtype=torch.bool)
        output = decoder(frames[:, :length], mask, cond=text, cond_mask=text_mask, attn_prior=priors[length - 1])
    decoder.reset_cache(use_cache=False)
    return output["output"]


def test_the_cache_keeps_each_frame_as_computed_under_its_own_attention_prior():
    """Why cached rollouts part from NeMo's uncached ones at the published size (benchmarks/kv_cache_divergence.md:
    identical with the inference attention prior off, parted with it on). NeMo's real decoder: the uncached path
    recomputes every earlier frame under the current step's prior; the cache keeps each frame as it was computed
    under the prior of its own step. Without a prior, or with one that stays put, both give the same output; with
    a prior that moves (as it does, following the alignment) the earlier frames differ, and through the next
    layers' self-attention so does the last frame, the one the next codes are drawn from."""
    from nemo.collections.tts.modules.transformer_2501 import Transformer

    torch.manual_seed(0)
    decoder = Transformer(
        n_layers=4, d_model=64, d_ffn=128, sa_n_heads=2, kernel_size=1, has_xattn=True, xa_d_memory=64, xa_n_heads=1
    ).eval()
    frames, text = torch.randn(1, 6, 64), torch.randn(1, 5, 64) * 3
    moving = [torch.softmax(torch.randn(1, 1, 5) * 3, dim=-1) for _ in range(6)]
    tolerance = 1e-5
    with torch.no_grad():
        for priors in ([None] * 6, [moving[-1]] * 6):
            cached, uncached = (decoder_output(decoder, frames, text, priors, c) for c in (True, False))
            torch.testing.assert_close(cached, uncached, rtol=tolerance, atol=tolerance)
        cached, uncached = (decoder_output(decoder, frames, text, moving, c) for c in (True, False))
    difference = (cached - uncached).abs().amax(dim=-1)[0]
    assert difference[:-1].min() > 1e-3, difference
    assert difference[-1] > 10 * tolerance, difference
