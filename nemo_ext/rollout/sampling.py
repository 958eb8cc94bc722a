"""One frame's codes sampled from the decoder's logits, with each code's log-probability under the distribution it
was drawn from.

The distribution is NeMo's (`MagpieTTSModel.sample_codes_from_logits`, NeMo 3.0.0): end-of-speech forbidden for
items known unfinished and forced for items known finished, special tokens forbidden (`clear_forbidden_logits`),
the top-k logits kept, then a softmax at the temperature. The draws are NeMo's too: one `torch.multinomial` per
codebook, in NeMo's order, so a seeded run samples the same codes (tests/test_rollout_decoder.py pins both). Like
NeMo's, it edits `logits` in place (the masks); NeMo's greedy end-of-speech check, which runs next, reads them.
"""

from __future__ import annotations

import torch
from nemo.collections.tts.modules.magpietts_modules import clear_forbidden_logits


def sample_frame(
    logits: torch.Tensor,
    *,
    num_codebooks: int,
    tokens_per_codebook: int,
    codebook_size: int,
    frame_stacking_factor: int,
    eos_id: int,
    temperature: float,
    topk: int,
    unfinished_items=(),
    finished_items=(),
    forbid_audio_eos: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits: (B, codebooks * tokens * stacking). Returns codes and their log-probs, each (B, codebooks, stacking)."""
    codes = torch.empty(logits.size(0), num_codebooks, frame_stacking_factor, dtype=torch.long, device=logits.device)
    logprobs = torch.empty(codes.shape, dtype=torch.float32, device=logits.device)
    for stacked in range(frame_stacking_factor):
        for codebook in range(num_codebooks):
            first = (codebook + num_codebooks * stacked) * tokens_per_codebook
            codebook_logits = logits[:, first : first + tokens_per_codebook]
            for item in unfinished_items:
                codebook_logits[item, eos_id] = float("-inf")
            for item in finished_items:
                codebook_logits[item, :] = float("-inf")
                codebook_logits[item, eos_id] = 0.0
            codebook_logits = clear_forbidden_logits(
                codebook_logits.unsqueeze(1), codebook_size, forbid_audio_eos=forbid_audio_eos
            ).squeeze(1)
            kth_best = torch.topk(codebook_logits, topk, dim=-1)[0][:, -1:]
            kept = codebook_logits.masked_fill(codebook_logits < kth_best, float("-inf"))
            scaled = kept / temperature
            drawn = torch.multinomial(torch.softmax(scaled, dim=-1), 1)
            codes[:, codebook, stacked] = drawn[:, 0]
            logprobs[:, codebook, stacked] = torch.log_softmax(scaled.float(), dim=-1).gather(1, drawn)[:, 0]
    return codes, logprobs
