"""Which decoder runs `infer_batch` for a MagpieTTS PO model: ours (`incremental`, nemo_ext/rollout/), NeMo's with
its KV cache (`nemo_cached`), or NeMo's as its own flags set it (`nemo`). GRPO's rollouts, DataGen's generation and
validation all reach generation through `infer_batch`, so choosing here covers every place NeMo's runs today."""

from __future__ import annotations

import contextlib

from nemo_ext.rollout.generate import generate
from nemo_ext.settings.rollout_decoder import INCREMENTAL, NEMO_CACHED


@contextlib.contextmanager
def nemo_kv_cache(model, on: bool):
    """NeMo's `infer_batch` reads `use_kv_cache_for_inference` (and resets the decoder's cache from it)."""
    saved = model.use_kv_cache_for_inference
    model.use_kv_cache_for_inference = on
    try:
        yield
    finally:
        model.use_kv_cache_for_inference = saved
        model.decoder.reset_cache(use_cache=False)


def decode(model, nemo_infer_batch, rollout_decoder: str, batch, use_cfg=False, **options):
    """`nemo_infer_batch(batch, use_cfg, **options)` (NeMo's method, bound) or ours, by `rollout_decoder`.

    A call that asks for NeMo's cross-attention images (`return_cross_attn_probs`, MagpieTTS's own validation
    plots) runs NeMo's decoder: those images are of NeMo's whole-prefix attention."""
    wants_attention_images = options.get("return_cross_attn_probs") or options.get("compute_all_heads_attn_maps")
    if rollout_decoder == INCREMENTAL and not wants_attention_images:
        options.pop("return_cross_attn_probs", None)
        options.pop("compute_all_heads_attn_maps", None)
        return generate(model, batch, use_cfg=use_cfg, **options)
    if rollout_decoder != NEMO_CACHED:  # NeMo's call as NeMo makes it, its own flags untouched
        return nemo_infer_batch(batch, use_cfg=use_cfg, **options)
    with nemo_kv_cache(model, on=True):
        return nemo_infer_batch(batch, use_cfg=use_cfg, **options)
