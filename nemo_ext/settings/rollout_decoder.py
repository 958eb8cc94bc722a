"""`model.rollout_decoder`: who decodes MagpieTTS rollouts (GRPO's, DataGen's, validation's), and the
architectures the incremental decoder refuses, read from the config before anything is built."""

from __future__ import annotations

from collections.abc import Mapping

from nemo_ext.errors import ConfigError

INCREMENTAL = "incremental"  # ours: each frame through the decoder once (nemo_ext/rollout/)
NEMO_CACHED = "nemo_cached"  # NeMo's infer_batch with its decoder KV cache
NEMO = "nemo"  # NeMo's infer_batch as NeMo's own flags set it (use_kv_cache_*): NeMo 3.0.0's rollouts bit for bit
ROLLOUT_DECODERS = (INCREMENTAL, NEMO_CACHED, NEMO)


def check_architecture(model: Mapping, rollout_decoder: str) -> None:
    """The incremental decoder computes one frame at a time: refuse, by key, an architecture where a frame's output
    needs more than that frame (an FFN kernel above 1) or that it does not decode (mixture-of-experts FFN, several
    encoders)."""
    if rollout_decoder != INCREMENTAL:
        return
    allowed = f"{NEMO_CACHED} or {NEMO} for this architecture"
    decoder = model.get("decoder") or {}
    kernel = decoder.get("kernel_size", 1)
    if kernel != 1:
        raise ConfigError(
            "model.rollout_decoder",
            rollout_decoder,
            f"{allowed} (model.decoder.kernel_size={kernel}: a frame's FFN output depends on the frames before it)",
        )
    if decoder.get("use_moe"):
        raise ConfigError("model.rollout_decoder", rollout_decoder, f"{allowed} (model.decoder.use_moe=true)")
    if model.get("model_type") == "multi_encoder_context_tts":
        raise ConfigError(
            "model.rollout_decoder", rollout_decoder, f"{allowed} (model.model_type=multi_encoder_context_tts)"
        )


def rollout_decoder_fits(settings) -> None:
    """A stage's cross-check, without torch: the `model` node's own decoder keys, over the architecture YAML when one
    is given (`model_architecture`). An architecture read from a checkpoint is checked when the model is built
    (`refuse_unsupported_architecture`), before any reward model is loaded."""
    rollout_decoder = settings.algorithm.rollout_decoder
    if rollout_decoder != INCREMENTAL:
        return
    model = settings.config.model
    architecture = {}
    if settings.run.model_architecture:
        from omegaconf import OmegaConf

        loaded = OmegaConf.load(settings.run.model_architecture)
        architecture = OmegaConf.to_container(loaded.model if "model" in loaded else loaded)
    decoder = {**(architecture.get("decoder") or {}), **(model.get("decoder") or {})}
    model_type = model.get("model_type", architecture.get("model_type"))
    check_architecture({"decoder": decoder, "model_type": model_type}, rollout_decoder)


def refuse_unsupported_architecture(model, rollout_decoder: str) -> None:
    """The built model's check (its architecture may come from a checkpoint): one ConfigError naming the key."""
    if rollout_decoder != INCREMENTAL:
        return
    from nemo_ext.rollout.generate import refusal

    reason = refusal(model)
    if reason is not None:
        raise ConfigError("model.rollout_decoder", rollout_decoder, f"{NEMO_CACHED} or {NEMO} ({reason})")
