"""MagpieTTS rollouts with the incremental decoder: NeMo 3.0.0's `infer_batch` loop, with each frame computed once.

The loop does what `MagpieTTSModel.infer_batch` does, in its order (so a seeded run draws the same random numbers):
the inference attention prior (NeMo's alignment helpers, fed this decoder's cross-attention of the new frame),
classifier-free guidance, the local transformer (NeMo's sampler, given the new frame's output), end-of-speech
detection, the minimum length, each rollout's own end, and the codec decode. What changes is what runs per frame:
the new frame's code embedding, the decoder stack on that one position (`incremental_decoder.py`), and the final
projection of that one position. It also keeps each sampled code's log-probability under the distribution it was
drawn from (temperature, top-k and the masks applied), which NeMo does not record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from nemo.collections.tts.models.magpietts import EOSDetectionMethod, InferBatchOutput, LocalTransformerType
from nemo.collections.tts.parts.utils.helpers import get_mask_from_lengths

from nemo_ext.rollout.incremental_decoder import IncrementalDecoder, unsupported_reason
from nemo_ext.rollout.sampling import sample_frame

# NeMo's rule: the codec needs at least this many frames, so decoding goes on until then even when all have ended.
MIN_DECODED_FRAMES = 4
# infer_batch's defaults for NeMo's MaskGIT local transformer.
MASKGIT_DEFAULTS = {
    "maskgit_n_steps": 3,
    "maskgit_noise_scale": 0.0,
    "maskgit_fixed_schedule": None,
    "maskgit_dynamic_cfg_scale": False,
    "maskgit_sampling_type": None,
}


@dataclass
class RolloutOutput(InferBatchOutput):
    # (B, codebooks, frames): each sampled code's log-probability under the distribution it was drawn from; None
    # for local-transformer rollouts (NeMo's local-transformer sampler does not expose its distributions).
    sampled_logprobs: torch.Tensor | None = None


def refusal(model) -> str | None:
    """Why `model`'s rollouts cannot use the incremental decoder, or None when they can."""
    if model.model_type == "multi_encoder_context_tts":
        return "model_type multi_encoder_context_tts (several conditionings per layer)"
    return unsupported_reason(model.decoder)


@torch.no_grad()
def generate(
    model,
    batch,
    use_cfg: bool = False,
    use_local_transformer_for_inference: bool = False,
    **maskgit_options,
) -> RolloutOutput:
    """`model.infer_batch(batch, use_cfg, use_local_transformer_for_inference=..., maskgit_...=...)`, decoded
    incrementally (NeMo's MaskGIT options, with NeMo's defaults, go to NeMo's MaskGIT sampler)."""
    params = model.inference_parameters
    stacking = model.frame_stacking_factor
    eos_detection = EOSDetectionMethod(params.eos_detection_method)
    start_time = time.time()

    context = model.prepare_context_tensors(batch)
    text = context.text
    batch_size = text.size(0)
    cond, cond_mask = context.cond, context.cond_mask
    prefix, prefix_mask = context.additional_decoder_input, context.additional_decoder_mask
    bos = torch.full((batch_size, model.num_audio_codebooks, stacking), model.audio_bos_id, device=text.device)
    first, first_mask = _embedded(model, bos)
    if prefix is not None:
        first, first_mask = torch.cat([prefix, first], dim=1), torch.cat([prefix_mask, first_mask], dim=1)
    if use_cfg:
        # NeMo's unconditional half: zero text (its first position kept), a zero decoder context of all-ones mask.
        dummy_cond, dummy_mask, dummy_prefix, dummy_prefix_mask, _ = model.prepare_dummy_cond_for_cfg(
            cond, cond_mask, prefix, prefix_mask
        )
        cond, cond_mask = torch.cat([cond, dummy_cond]), torch.cat([cond_mask, dummy_mask])
        unconditional, unconditional_mask = first.clone(), first_mask.clone()
        if dummy_prefix is not None:
            unconditional[:, : dummy_prefix.size(1)] = dummy_prefix
            unconditional_mask[:, : dummy_prefix.size(1)] = dummy_prefix_mask
        first, first_mask = torch.cat([first, unconditional]), torch.cat([first_mask, unconditional_mask])

    steps = params.max_decoder_steps // stacking
    decoder = IncrementalDecoder(model.decoder, capacity=first.size(1) + steps)
    layers = model.decoder.n_layers

    attn_prior_row = None
    unfinished_texts, finished_texts_counter, end_indices = {}, {}, {}
    attended_timestep_counter = [{} for _ in range(batch_size)]
    last_attended_timesteps = [[1] * batch_size]
    predictions, logprobs = [], []
    time_to_first_prediction = 0.0
    for idx in range(steps):
        if idx == 1:
            time_to_first_prediction = time.time() - start_time
        attn_prior = attn_prior_row
        if params.apply_prior_to_layers is not None:
            attn_prior = [attn_prior_row if layer in params.apply_prior_to_layers else None for layer in range(layers)]
        if idx == 0:
            out, attention = decoder.start(first, first_mask, cond, cond_mask, attn_prior)
        else:
            frame, _ = _embedded(model, predictions[-1])
            if use_cfg:
                frame = torch.cat([frame, frame])
            out, attention = decoder.step(frame, attn_prior)
        out = out[:, -1:]
        logits = model.final_proj(out)[:, -1]  # (B or 2B, codebooks * tokens * stacking)
        if use_cfg:
            logits = (1 - params.cfg_scale) * logits[batch_size:] + params.cfg_scale * logits[:batch_size]

        if params.apply_attention_prior:
            scores, _ = model.get_cross_attention_scores(attention)
            alignment = scores
            if params.estimate_alignment_from_layers is not None:
                alignment, _ = model.get_cross_attention_scores(
                    attention, filter_layers=params.estimate_alignment_from_layers
                )
            if idx >= params.start_prior_after_n_audio_steps:
                attended, attended_timestep_counter = model.get_most_attended_text_timestep(
                    alignment_attention_scores=alignment,
                    last_attended_timesteps=last_attended_timesteps,
                    text_lens=context.text_lens,
                    lookahead_window_size=params.attention_prior_lookahead_window,
                    attended_timestep_counter=attended_timestep_counter,
                    batch_size=batch_size,
                )
                last_attended_timesteps.append(attended)
                attn_prior_row, unfinished_texts, finished_texts_counter = model.construct_inference_prior(
                    prior_epsilon=params.attention_prior_epsilon,
                    cross_attention_scores=scores,
                    text_lens=context.text_lens,
                    text_time_step_attended=attended,
                    attended_timestep_counter=attended_timestep_counter,
                    unfinished_texts=unfinished_texts,
                    finished_texts_counter=finished_texts_counter,
                    end_indices=end_indices,
                    lookahead_window_size=params.attention_prior_lookahead_window,
                    batch_size=batch_size,
                )

        if params.ignore_finished_sentence_tracking:
            finished_items, unfinished_items = {}, {}
        else:
            finished_items = {k: v for k, v in finished_texts_counter.items() if v >= 20}
            unfinished_items = {k: v for k, v in unfinished_texts.items() if v}
        forbid_audio_eos = idx * stacking < params.min_generated_frames

        if use_local_transformer_for_inference:
            codes = _local_transformer_codes(
                model, out[:, -1], unfinished_items, finished_items, use_cfg, forbid_audio_eos, maskgit_options
            )
            frame_logprobs = None
        else:
            codes, frame_logprobs = sample_frame(
                logits,
                num_codebooks=model.num_audio_codebooks,
                tokens_per_codebook=model.num_all_tokens_per_codebook,
                codebook_size=model.codebook_size,
                frame_stacking_factor=stacking,
                eos_id=model.audio_eos_id,
                temperature=params.temperature,
                topk=params.topk,
                unfinished_items=unfinished_items,
                finished_items=finished_items,
                forbid_audio_eos=forbid_audio_eos,
            )
        greedy = model.sample_codes_from_logits(
            logits,
            temperature=0.01,
            topk=1,
            unfinished_items=unfinished_items,
            finished_items=finished_items,
            forbid_audio_eos=forbid_audio_eos,
        )  # NeMo's greedy pass (it draws from the random stream too, so it runs as NeMo runs it)
        for item in range(batch_size):
            if item not in end_indices:
                end_frame = model.detect_eos(codes[item], greedy[item], eos_detection)
                if end_frame != float("inf"):
                    end_indices[item] = idx * stacking + end_frame
        predictions.append(codes)
        logprobs.append(frame_logprobs)
        if len(end_indices) == batch_size and len(predictions) >= MIN_DECODED_FRAMES:
            break

    generation_time = time.time() - start_time
    predicted_codes = torch.cat(predictions, dim=-1)  # (B, codebooks, frames): undoes the frame stacking
    lengths = [end_indices.get(item, params.max_decoder_steps) for item in range(batch_size)]
    predicted_codes_lens = torch.tensor(lengths, device=text.device).long()
    predicted_codes = predicted_codes[:, :, : predicted_codes_lens.max()]
    sampled_logprobs = None
    if logprobs[0] is not None:
        sampled_logprobs = torch.cat(logprobs, dim=-1)[:, :, : predicted_codes.size(-1)]
    audio, audio_lens, predicted_codes = model._codec_helper.codes_to_audio(predicted_codes, predicted_codes_lens)
    elapsed = time.time() - start_time
    generated_seconds = audio_lens.max().item() * audio_lens.shape[0] / model.output_sample_rate
    return RolloutOutput(
        predicted_audio=audio,
        predicted_audio_lens=audio_lens,
        predicted_codes=predicted_codes,
        predicted_codes_lens=predicted_codes_lens,
        rtf_metrics={
            "rtf": generated_seconds / elapsed,
            "time_to_first_prediction": time_to_first_prediction,
            "tts_generation_time": generation_time,
            "max_frames_generated": len(predictions),
            "tts_generation_time_per_frame": generation_time / (len(predictions) * stacking),
            "batch_size": batch_size,
        },
        sampled_logprobs=sampled_logprobs,
    )


def _embedded(model, codes):
    """NeMo's code embedding of `codes` (B, codebooks, stacking): one decoder position, and its mask."""
    lens = torch.full((codes.size(0),), codes.size(-1), device=codes.device, dtype=torch.long)
    embedded, embedded_lens = model.embed_audio_tokens(audio_tokens=codes, audio_tokens_lens=lens)
    return embedded, get_mask_from_lengths(embedded_lens)


def _local_transformer_codes(
    model, dec_output, unfinished_items, finished_items, use_cfg, forbid_audio_eos, maskgit_options
):
    params = model.inference_parameters
    common = dict(
        dec_output=dec_output,
        temperature=params.temperature,
        topk=params.topk,
        unfinished_items=unfinished_items,
        finished_items=finished_items,
        use_cfg=use_cfg,
        cfg_scale=params.cfg_scale,
        forbid_audio_eos=forbid_audio_eos,
    )
    if model.local_transformer_type == LocalTransformerType.AR:
        return model._lt_helper.sample_autoregressive(**common, use_kv_cache=params.use_LT_kv_cache)
    if model.local_transformer_type == LocalTransformerType.MASKGIT:
        maskgit = {**MASKGIT_DEFAULTS, **maskgit_options}
        return model._lt_helper.sample_maskgit(
            **common,
            n_steps=maskgit["maskgit_n_steps"],
            noise_scale=maskgit["maskgit_noise_scale"],
            fixed_schedule=maskgit["maskgit_fixed_schedule"],
            dynamic_cfg_scale=maskgit["maskgit_dynamic_cfg_scale"],
            sampling_type=maskgit["maskgit_sampling_type"],
        )
    raise ValueError(
        f"local transformer inference requested, but the local transformer type is {model.local_transformer_type}"
    )
