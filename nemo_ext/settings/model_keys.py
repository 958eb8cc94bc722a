"""The top-level `model.*` keys NeMo 3.0.0's classes read, pinned from their source (nemo_ext_tools/nemo_source_keys.py;
tests/test_model_keys.py rescans the installed NeMo against these sets), and the model families. Each Stage
declares which set its NeMo class reads (nemo_ext/stages/). A key outside them is a typo that would be accepted
silently: NVIDIA's published GRPO command sets `num_generations_per_item`, which nothing reads (NeMo reads
`n_generations_per_item`)."""

from __future__ import annotations

from dataclasses import dataclass

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


# EasyMagpieTTS (NeMo's decoder-only family): its base classes' keys, and its GRPO class's beyond them.
EASY_PO_MODULE = "nemo.collections.tts.models.easy_magpietts_preference_optimization"
EASY_BASE_MODULES = (
    "nemo.collections.tts.models.easy_magpietts_inference",
    "nemo.collections.tts.models.easy_magpietts",
    "nemo.core.classes.modelPT",
)

EASY_MAGPIETTS_KEYS = frozenset(
    {
        "add_language_to_context_text",
        "audio_embedding_dim",
        "cfg_unconditional_prob",
        "chakra_profile",
        "codecmodel_path",
        "context_duration_max",
        "context_duration_min",
        "dataloader_params",
        "dataset",
        "decoder_type",
        "disable_cas_for_context_text",
        "disable_lm_text_head",
        "disable_subword_embedding",
        "dropout_text_input_prob",
        "dump_debug_info",
        "dump_debug_info_to_file",
        "embedding_dim",
        "exclude",
        "frame_stacking_factor",
        "freeze_updates",
        "hidden_dim",
        "ignore_phoneme_languages",
        "include",
        "inference_use_cfg_in_val",
        "init_from_nemo_model",
        "init_from_pretrained_model",
        "init_from_ptl_ckpt",
        "init_strict",
        "is_frozen",
        "load_cached_codes_if_available",
        "local_transformer_hidden_dim",
        "local_transformer_loss_scale",
        "local_transformer_n_heads",
        "local_transformer_n_layers",
        "local_transformer_type",
        "memory_profile",
        "model",
        "modules",
        "name",
        "nemo_version",
        "nemotron_h_config",
        "nsys_profile",
        "optim",
        "optim_param_groups",
        "parallel_codebook_loss_scale",
        "path",
        "phoneme_as_text_prob",
        "phoneme_confidence_unk_threshold",
        "phoneme_corruption_batch_prob",
        "phoneme_corruption_timestep_ratio",
        "phoneme_corruption_type",
        "phoneme_corruption_unk_mode_prob",
        "phoneme_loss_weight",
        "phoneme_stacking_factor",
        "phoneme_tokenizer",
        "pronunciation_control_g2p",
        "router_load_balancing_loss_coeff",
        "router_z_loss_coeff",
        "run_val_inference",
        "setter",
        "speaker_encoder",
        "speaker_encoder_d_ffn",
        "speaker_encoder_kernel_size",
        "speaker_encoder_n_heads",
        "speaker_encoder_n_layers",
        "speaker_encoder_p_dropout",
        "streaming_phonemes_delay",
        "streaming_speech_delay",
        "target",
        "test_ds",
        "text_conditioning_tokenizer_name",
        "text_input_mode",
        "text_tokenizers",
        "train_ds",
        "train_shuffle_context_embedding_prob",
        "training_modes",
        "transformer_hf_backend",
        "use_bpe_char_tokenizer",
        "use_lhotse",
        "use_meta_init_for_decoder",
        "use_moe",
        "use_multilingual_asr",
        "use_scl_loss",
        "use_speaker_encoder",
        "use_utmos",
        "utmos_batch_size",
        "utmos_num_workers",
        "validation_ds",
        "vector_quantizer",
        "volume_norm",
    }
)

EASY_GRPO_KEYS = frozenset(
    {
        "aux_phoneme_loss_weight",
        "batch_size_for_chunked_tf",
        "best_cer_threshold",
        "best_ssim_achievable",
        "best_utmos_achievable",
        "cer_reward_weight",
        "entropy_coeff",
        "grpo_beta",
        "gt_phoneme_input_prob",
        "inference_cfg_prob",
        "inference_cfg_scale",
        "inference_phoneme_sampling_method",
        "inference_temperature",
        "inference_topk",
        "loss_type",
        "max_decoder_steps",
        "max_grad_norm",
        "max_valid_codes_len",
        "mean_cer_dataset",
        "mean_ssim_dataset",
        "mean_utmos_dataset",
        "min_valid_codes_len",
        "n_generations_per_item",
        "normalize_whisper_transcript",
        "po_groups_per_subbatch",
        "reference_free",
        "reference_model_ckpt_path",
        "reward_asr_model",
        "reward_asr_model_name",
        "scale_rewards",
        "speaker_verification_model_name",
        "ssim_reward_weight",
        "use_local_transformer_prob",
        "utmos_reward_weight",
        "worst_cer_threshold",
    }
)

# Keys this project adds to every model stage (docs/configuration.md: the `model.whisper` block and the reward
# model paths).
OUR_KEYS = frozenset({"whisper", "nemo_asr", "speaker_verification"})


@dataclass(frozen=True)
class ModelFamily:
    name: str  # the base class, for messages
    keys: frozenset[str]  # what the base classes read (the architecture's keys)
    po_module: str  # NeMo's module holding the family's PO classes
    base_modules: tuple[str, ...]


MAGPIETTS = ModelFamily("MagpieTTSModel", MAGPIETTS_KEYS, PO_MODULE, BASE_MODULES)
EASY_MAGPIETTS = ModelFamily("EasyMagpieTTSModel", EASY_MAGPIETTS_KEYS, EASY_PO_MODULE, EASY_BASE_MODULES)
