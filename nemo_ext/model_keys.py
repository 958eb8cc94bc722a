"""The top-level `model.*` keys NeMo 3.0.0's classes read (pinned from their source by nemo_ext/nemo_source_keys.py;
tests/test_model_keys.py rescans the installed NeMo against these sets), plus this project's own keys. A key outside
them is a typo that would be accepted silently: NVIDIA's published GRPO command sets `num_generations_per_item`,
which nothing reads (NeMo reads `n_generations_per_item`)."""

from __future__ import annotations

import difflib

from omegaconf import DictConfig

from nemo_ext.errors import ConfigError

PO_MODULE = "nemo.collections.tts.models.magpietts_preference_optimization"
BASE_MODULES = ("nemo.collections.tts.models.magpietts", "nemo.core.classes.modelPT")

# MagpieTTSModel and ModelPT (whole modules: the architecture's keys).

MAGPIETTS_KEYS = frozenset(
    {
        "aligner_encoder_train_steps",
        "alignment_encoder_loss_scale",
        "alignment_loss_scale",
        "binarize_attn_method",
        "binarize_prior_after_step",
        "binarize_repeat_audio_factor",
        "binarized_prior_epsilon",
        "cfg_unconditional_prob",
        "chakra_profile",
        "codebook_loss_scale",
        "codecmodel_path",
        "context_decoder_layers",
        "context_duration_max",
        "context_duration_min",
        "context_encoder",
        "ctc_prior_layer_ids",
        "dataloader_params",
        "datasets",
        "dec_random_input_max",
        "decoder",
        "decoder_input_dropout_prob",
        "dump_debug_info",
        "dump_debug_info_to_file",
        "embedding_dim",
        "encoder",
        "exclude",
        "forced_audio_bos_id",
        "forced_audio_eos_id",
        "forced_context_audio_bos_id",
        "forced_context_audio_eos_id",
        "forced_mask_token_id",
        "forced_num_all_tokens_per_codebook",
        "frame_stacking_factor",
        "freeze_updates",
        "g2p",
        "heteronyms",
        "include",
        "indefinite_prior_prob",
        "inference_cfg_scale",
        "inference_parameters",
        "inference_temperature",
        "inference_topk",
        "inference_use_cfg",
        "init_from_nemo_model",
        "init_from_pretrained_model",
        "init_from_ptl_ckpt",
        "init_strict",
        "is_frozen",
        "legacy_text_conditioning",
        "load_cached_codes_if_available",
        "local_transformer_hidden_dim",
        "local_transformer_loss_scale",
        "local_transformer_n_heads",
        "local_transformer_n_layers",
        "local_transformer_type",
        "max_decoder_steps",
        "memory_profile",
        "model",
        "model_type",
        "modules",
        "name",
        "nemo_version",
        "nsys_profile",
        "optim",
        "optim_param_groups",
        "path",
        "phoneme_dict",
        "prior_end_step",
        "prior_future_context",
        "prior_future_decay",
        "prior_past_context",
        "prior_past_decay",
        "prior_scaledown_start_step",
        "prior_scaling_factor",
        "router_load_balancing_loss_coeff",
        "router_z_loss_coeff",
        "setter",
        "target",
        "test_ds",
        "text_conditioning_tokenizer_name",
        "text_context_remapping_json",
        "text_context_remapping_prob",
        "text_tokenizer",
        "text_tokenizers",
        "train_ds",
        "train_shuffle_context_embedding_prob",
        "transcript_decoder_layers",
        "use_alignment_encoder",
        "use_bpe_char_tokenizer",
        "use_kv_cache_for_inference",
        "use_lhotse",
        "use_moe",
        "use_prior_for_aligner",
        "use_scl_loss",
        "use_text_conditioning_encoder",
        "validation_ds",
        "vector_quantizer",
        "volume_norm",
    }
)

# MagpieTTSModelOfflinePODataGen, beyond MagpieTTSModel's.

DATAGEN_KEYS = frozenset(
    {
        "load_whisper_model",
        "normalize_whisper_transcript",
        "pref_set_language",
    }
)

# MagpieTTSModelOfflinePO, beyond MagpieTTSModel's.

DPO_KEYS = frozenset(
    {
        "dpo_beta",
        "dpo_loss_type",
        "dpo_pref_loss_weight",
        "dpo_sft_loss_weight",
        "reference_model_ckpt_path",
    }
)

# MagpieTTSModelOnlinePO, beyond MagpieTTSModel's.

GRPO_KEYS = frozenset(
    {
        "best_cer_threshold",
        "best_ssim_achievable",
        "cer_reward_weight",
        "grpo_beta",
        "inference_cfg_prob",
        "load_whisper_model",
        "loss_type",
        "mean_cer_dataset",
        "mean_ssim_dataset",
        "n_generations_per_item",
        "normalize_whisper_transcript",
        "pesq_reward_weight",
        "reference_free",
        "reference_model_ckpt_path",
        "reward_asr_model",
        "scale_rewards",
        "ssim_reward_weight",
        "use_kv_cache_during_online_po",
        "use_local_transformer_prob",
        "use_pesq",
        "worst_cer_threshold",
    }
)


# Keys this project adds, per stage (README: the `model.whisper` block, the reward model paths, and the switches).
OUR_KEYS = frozenset({"whisper", "nemo_asr", "speaker_verification"})
OUR_STAGE_KEYS = {
    "online_po": frozenset({"reference_policy_mode", "rollout_audio_files"}),
    "offline_po_datagen": frozenset({"datagen_seed"}),
    "offline_po_dpo": frozenset(),
}
# Each stage's NeMo class and the keys it reads beyond MagpieTTSModel's.
NEMO_STAGES = {
    "online_po": ("MagpieTTSModelOnlinePO", GRPO_KEYS),
    "offline_po_datagen": ("MagpieTTSModelOfflinePODataGen", DATAGEN_KEYS),
    "offline_po_dpo": ("MagpieTTSModelOfflinePO", DPO_KEYS),
}


# Stage YAML defaults that are not NeMo 3.0.0's code defaults, each on purpose (README, "Defaults that are not
# NeMo's"). tests/test_model_keys.py finds every such difference in NeMo's source and requires it listed here.
DELIBERATE_DEFAULTS = {
    ("online_po", "reward_asr_model"): (
        "whisper (NeMo: nemo). The CER reward for every language MagpieTTS speaks, in the dtype `whisper.dtype` "
        "sets; NeMo's default is an English-only CTC model (parakeet-ctc-0.6b)"
    ),
    ("online_po", "inference_cfg_scale"): (
        "2.5 (NeMo's GRPO: 1.0). Only used when inference_cfg_prob > 0, and at 1.0 CFG changes nothing; 2.5 is "
        "MagpieTTS's own inference default (ModelInferenceParameters.cfg_scale)"
    ),
    ("online_po", "grpo_beta"): (
        "0.01 (NeMo: no default, a missing key fails at the first step). The weight of the KL term"
    ),
    ("offline_po_datagen", "use_kv_cache_for_inference"): (
        "true (NeMo: false). DataGen only generates: the KV cache decodes each step incrementally instead of "
        "re-running the whole prefix"
    ),
    ("offline_po_datagen", "load_whisper_model"): (
        "null (NeMo: false): Whisper is loaded exactly when the language is scored with it (not English); "
        "false with a non-English language is refused"
    ),
}


def check_model_keys(model: DictConfig, stage: str) -> None:
    """Refuse a `model.*` key that neither the stage's NeMo class, MagpieTTSModel nor this project reads."""
    nemo_class, nemo_keys = NEMO_STAGES[stage]
    allowed = MAGPIETTS_KEYS | nemo_keys | OUR_KEYS | OUR_STAGE_KEYS[stage]
    for key in model.keys():
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), sorted(allowed), n=1, cutoff=0.6)
        hint = f"; did you mean `{close[0]}`?" if close else ""
        raise ConfigError(
            f"model.{key}",
            model.get(key),
            f"a key that {nemo_class}, MagpieTTSModel or this recipe reads (no code reads `{key}`){hint}",
        )
