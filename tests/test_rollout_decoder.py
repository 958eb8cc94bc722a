"""Our rollout decoder (nemo_ext/rollout/) against NeMo 3.0.0's: the decoder stack at the published size, NeMo's
whole `infer_batch` on the tiny model (inference prior on, CFG on and off, local transformer on and off), the
sampler's draws and log-probabilities, and the refusals."""

from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
from nemo.collections.tts.models import MagpieTTSModel
from nemo.collections.tts.modules.transformer_2501 import Transformer

from nemo_ext.errors import ConfigError
from nemo_ext.rollout.generate import generate
from nemo_ext.rollout.incremental_decoder import IncrementalDecoder, UnsupportedDecoder
from nemo_ext.rollout.sampling import sample_frame
from nemo_ext.settings.rollout_decoder import check_architecture
from nemo_ext.stages import ONLINE_PO

FP32_TOLERANCE = 1e-5


def published_decoder(**changes) -> Transformer:
    """NeMo's decoder at the published size (examples/tts/conf/magpietts/magpietts.yaml): 12 layers of 768, FFN 3072
    with kernel 1, 12 self-attention heads, one cross-attention head of 128, learnable positions, norm out."""
    arguments = dict(
        n_layers=12,
        d_model=768,
        d_ffn=3072,
        sa_n_heads=12,
        kernel_size=1,
        p_dropout=0.1,
        has_xattn=True,
        xa_d_memory=768,
        xa_n_heads=1,
        xa_d_head=128,
        is_causal=True,
        apply_norm_to_cond=True,
        apply_norm_out=True,
        max_length_causal_mask=2048,
        use_learnable_pos_emb=True,
        make_prior_window_strict=True,
    )
    return Transformer(**{**arguments, **changes}).eval()


def moving_prior(step: int, batch: int, text: int) -> torch.Tensor:
    """A one-row inference prior (B, 1, T_text) whose window moves with the step, as NeMo's follows the alignment."""
    prior = torch.full((batch, 1, text), 0.1)
    centre = min(step // 2, text - 1)
    prior[:, 0, max(0, centre - 1) : centre + 4] = 1.0
    return prior


def nemo_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, priors, cached: bool) -> torch.Tensor:
    """NeMo's decoding as infer_batch calls it: one call per step over the whole prefix, step i under priors[i] on
    layers 4-7; returns the newest position's output at each step."""
    decoder.reset_cache(use_cache=cached)
    outputs = []
    for step in range(frames.size(1) + 1):
        x = torch.cat([prefix, frames[:, :step]], dim=1)
        mask = torch.cat([prefix_mask, torch.ones(x.size(0), step, dtype=torch.bool)], dim=1)
        prior = [priors[step] if layer in (4, 5, 6, 7) else None for layer in range(decoder.n_layers)]
        outputs.append(decoder(x, mask, cond=cond, cond_mask=cond_mask, attn_prior=prior)["output"][:, -1])
    decoder.reset_cache(use_cache=False)
    return torch.stack(outputs, dim=1)


def incremental_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, priors) -> torch.Tensor:
    state = IncrementalDecoder(decoder, capacity=prefix.size(1) + 2)  # small: the buffers must grow on the way
    layer_prior = lambda step: [priors[step] if layer in (4, 5, 6, 7) else None for layer in range(decoder.n_layers)]  # noqa: E731
    out, _ = state.start(prefix, prefix_mask, cond, cond_mask, layer_prior(0))
    outputs = [out[:, -1]]
    for step in range(frames.size(1)):
        out, _ = state.step(frames[:, step : step + 1], layer_prior(step + 1))
        outputs.append(out[:, -1])
    return torch.stack(outputs, dim=1)


@pytest.fixture(scope="module")
def published_stack():
    torch.manual_seed(0)
    decoder = published_decoder()
    batch, text, context, steps = 3, 40, 6, 14
    cond = torch.randn(batch, text, 768)
    cond_mask = torch.ones(batch, text, dtype=torch.bool)
    cond_mask[2, 30:] = False  # a shorter text in the batch
    prefix = torch.randn(batch, context, 768)
    frames = torch.randn(batch, steps, 768)
    priors = [None] + [moving_prior(step, batch, text) for step in range(1, steps + 1)]
    return decoder, prefix, frames, cond, cond_mask, priors


@torch.no_grad()
def test_each_frame_equals_nemos_cached_decoder_at_the_published_size(published_stack):
    decoder, prefix, frames, cond, cond_mask, priors = published_stack
    prefix_mask = torch.ones(prefix.shape[:2], dtype=torch.bool)  # contexts of one length
    ours = incremental_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, priors)
    cached = nemo_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, priors, cached=True)
    torch.testing.assert_close(ours, cached, rtol=FP32_TOLERANCE, atol=FP32_TOLERANCE)
    # The control: NeMo's uncached path re-applies the current prior to every past frame; ours does not follow it.
    uncached = nemo_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, priors, cached=False)
    assert (ours - uncached).abs().max() > 100 * FP32_TOLERANCE


@torch.no_grad()
def test_padded_decoder_context_stays_masked_at_every_step(published_stack):
    """Contexts of different lengths (right-padded, as NeMo batches them), prior off. NeMo's uncached path and its
    training forward mask the padded context frames as keys; NeMo's cache masks them only in its first call, so
    every later frame also attends to them (zero keys, score 0). Ours keeps them masked: equal to the uncached
    path, and the cached path differs by what those keys take."""
    decoder, prefix, frames, cond, cond_mask, _ = published_stack
    prefix_mask = torch.ones(prefix.shape[:2], dtype=torch.bool)
    prefix_mask[1, 3:] = False
    no_prior = [None] * (frames.size(1) + 1)
    ours = incremental_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, no_prior)
    uncached = nemo_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, no_prior, cached=False)
    cached = nemo_outputs(decoder, prefix, prefix_mask, frames, cond, cond_mask, no_prior, cached=True)
    torch.testing.assert_close(ours, uncached, rtol=FP32_TOLERANCE, atol=FP32_TOLERANCE)
    assert (cached[1, 1:] - uncached[1, 1:]).abs().max() > 100 * FP32_TOLERANCE  # the padded item, after step 0
    torch.testing.assert_close(cached[[0, 2]], uncached[[0, 2]], rtol=FP32_TOLERANCE, atol=FP32_TOLERANCE)


def test_a_decoder_whose_frames_need_their_past_is_refused():
    with pytest.raises(UnsupportedDecoder, match="kernel_size 3"):
        IncrementalDecoder(
            published_decoder(
                n_layers=1, d_model=64, d_ffn=64, sa_n_heads=2, kernel_size=3, xa_d_memory=64, xa_d_head=32
            ),
            capacity=4,
        )
    with pytest.raises(ConfigError) as refused:
        check_architecture({"decoder": {"kernel_size": 3}}, "incremental")
    assert "model.rollout_decoder" in str(refused.value) and "kernel_size=3" in str(refused.value)
    check_architecture({"decoder": {"kernel_size": 3}}, "nemo_cached")  # NeMo's decoder handles any kernel


def test_the_sampler_draws_nemos_codes_and_reports_their_log_probabilities(captured_tiny):
    model, _ = captured_tiny
    torch.manual_seed(11)
    width = model.num_audio_codebooks * model.num_all_tokens_per_codebook * model.frame_stacking_factor
    logits = torch.randn(5, width) * 3
    options = dict(temperature=0.7, topk=5, unfinished_items={1: True}, finished_items={3: 20})
    torch.manual_seed(5)
    nemo_codes = model.sample_codes_from_logits(logits.clone(), **options)
    torch.manual_seed(5)
    codes, logprobs = sample_frame(
        logits.clone(),
        num_codebooks=model.num_audio_codebooks,
        tokens_per_codebook=model.num_all_tokens_per_codebook,
        codebook_size=model.codebook_size,
        frame_stacking_factor=model.frame_stacking_factor,
        eos_id=model.audio_eos_id,
        **options,
    )
    assert torch.equal(codes, nemo_codes)
    # By hand, codebook 0 of item 0: keep the 5 best allowed logits, softmax at 0.7, read the drawn code.
    tokens = model.num_all_tokens_per_codebook
    row = logits[0, :tokens].clone()
    allowed = torch.zeros(tokens, dtype=torch.bool)
    allowed[: model.codebook_size] = True
    allowed[model.audio_eos_id] = True
    row[~allowed] = float("-inf")
    best = torch.topk(row, 5).values[-1]
    row[row < best] = float("-inf")
    expected = torch.log(torch.exp(row / 0.7) / torch.exp(row / 0.7).sum())[codes[0, 0, 0]]
    assert logprobs[0, 0, 0].item() == pytest.approx(expected.item(), abs=1e-5)
    assert codes[3].eq(model.audio_eos_id).all()  # a finished item is forced to end, with probability 1
    assert logprobs[3].abs().max() < 1e-6
    assert not codes[1].eq(model.audio_eos_id).any()  # an unfinished one may not end


class FirstBatch(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if not hasattr(self, "batch"):
            self.model = pl_module
            self.batch = {k: v.clone() if torch.is_tensor(v) else copy.deepcopy(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def captured_tiny(tiny, tmp_path_factory):
    """NeMo's tiny MagpieTTS as a real GRPO run built it (decoder_ce: a context encoder's output is the decoder's
    prefix; local transformer; inference prior on), and its first training batch."""
    from magpie_testing import compose

    runs = tmp_path_factory.mktemp("runs")
    grab = FirstBatch()
    cfg = compose("online_po_tiny", [f"tiny_root={tiny.root}", f"exp_manager.exp_dir={runs}", "trainer.max_steps=1"])
    ONLINE_PO.run(cfg, callbacks=[grab])
    model = grab.model.eval()
    model.inference_parameters.topk = int(model.cfg.inference_topk)
    model.inference_parameters.max_decoder_steps = 40
    return model, model.repeat_items_in_batch(grab.batch, 3)


@pytest.mark.parametrize("use_cfg", [False, True], ids=["cfg-off", "cfg-on"])
@pytest.mark.parametrize("local_transformer", [False, True], ids=["parallel", "local-transformer"])
def test_rollouts_equal_nemos_cached_infer_batch(captured_tiny, use_cfg, local_transformer):
    model, batch = captured_tiny
    assert model.inference_parameters.apply_attention_prior and min(batch["text_lens"].tolist()) > 5  # prior on
    logits = []
    hook = model.final_proj.register_forward_hook(lambda module, inputs, output: logits.append(output[:, -1].clone()))
    try:
        model.use_kv_cache_for_inference = True
        torch.manual_seed(3)
        nemo = MagpieTTSModel.infer_batch(  # NeMo's own, past this project's choice of decoder
            model, batch, use_cfg=use_cfg, use_local_transformer_for_inference=local_transformer
        )
        nemo_logits, logits[:] = list(logits), []
        torch.manual_seed(3)
        ours = generate(model, batch, use_cfg=use_cfg, use_local_transformer_for_inference=local_transformer)
    finally:
        hook.remove()
        model.use_kv_cache_for_inference = False
        model.decoder.reset_cache(use_cache=False)
    assert len(logits) == len(nemo_logits) > 4
    for ours_frame, nemo_frame in zip(logits, nemo_logits, strict=True):
        torch.testing.assert_close(ours_frame, nemo_frame, rtol=FP32_TOLERANCE, atol=FP32_TOLERANCE)
    assert torch.equal(ours.predicted_codes_lens, nemo.predicted_codes_lens)
    assert torch.equal(ours.predicted_codes, nemo.predicted_codes)
    assert torch.equal(ours.predicted_audio_lens, nemo.predicted_audio_lens)
    if local_transformer:
        assert ours.sampled_logprobs is None
    else:
        assert ours.sampled_logprobs.shape == ours.predicted_codes.shape
        assert (ours.sampled_logprobs <= 0).all()
