"""GRPO (online preference optimization) with configurable, frozen reward models."""

from __future__ import annotations

import copy

import torch
from nemo.collections.tts.models import MagpieTTSModel
from nemo.collections.tts.models import magpietts_preference_optimization as upstream
from omegaconf import DictConfig, open_dict

from nemo_ext.config import GRPO_LOSS_TYPES, REWARD_ASR_MODELS, require_choice
from nemo_ext.errors import ConfigError
from nemo_ext.models.reward_models_mixin import RewardModelsMixin
from nemo_ext.whisper_asr import upstream_uses_working_transcription


class MagpieTTSOnlinePO(RewardModelsMixin, upstream.MagpieTTSModelOnlinePO):
    """NeMo's `MagpieTTSModelOnlinePO` with Whisper loaded from `model.whisper` (checkpoint and dtype) and the NeMo
    reward models from `model.nemo_asr` / `model.speaker_verification` (hub name or local `.nemo`)."""

    def __init__(self, cfg: DictConfig, trainer=None):
        # Upstream's __init__ loads three hub models by hard-coded name, so its body (NeMo 3.0.0) is
        # reproduced here with configurable loaders; MagpieTTSModel's own __init__ runs unchanged.
        # The recipe checks these too, before a trainer exists; this guards programmatic construction.
        require_choice(cfg, "reward_asr_model", "nemo", REWARD_ASR_MODELS, prefix="model.")
        require_choice(cfg, "loss_type", "grpo", GRPO_LOSS_TYPES, prefix="model.")
        reward_asr = cfg.get("reward_asr_model", "nemo")
        loss_type = cfg.get("loss_type", "grpo")

        MagpieTTSModel.__init__(self, cfg, trainer)
        self._init_telemetry()

        self.reference_free = self.cfg.get("reference_free", False)
        if not self.reference_free:
            self._reference_model = self._build_reference_model(cfg)

        if reward_asr == "nemo":
            self._load_nemo_asr(cfg)
        # Upstream loads a second Whisper when both flags are set; one copy serves both uses.
        if reward_asr == "whisper" or cfg.get("load_whisper_model", False):
            self._load_whisper(cfg)
        self._load_speaker_verification(cfg)

        if self.cfg.get("use_pesq", False):
            if not upstream.HAVE_TORCHAUDIO:
                raise ConfigError("model.use_pesq", True, "false (torchaudio is not installed)")
            self.squim_objective_model = upstream.SQUIM_OBJECTIVE.get_model()
            self.squim_objective_model.requires_grad_(False)

        self.loss_type = loss_type
        self.scale_rewards = self.cfg.get("scale_rewards", True)
        self.max_decoder_steps = self.cfg.get("max_decoder_steps", 430)
        self._normalize_whisper_transcript = self.cfg.get("normalize_whisper_transcript", True)
        self._normalizer_cache = {}
        self.best_cer_threshold = self.cfg.get("best_cer_threshold", 1.0)
        self.worst_cer_threshold = self.cfg.get("worst_cer_threshold", 1.0)

    @staticmethod
    def _build_reference_model(cfg: DictConfig) -> MagpieTTSModel:
        ref_cfg = copy.deepcopy(cfg)
        with open_dict(ref_cfg):
            ref_cfg.train_ds = None
            ref_cfg.validation_ds = None
        reference = MagpieTTSModel(cfg=ref_cfg)
        checkpoint = torch.load(cfg.reference_model_ckpt_path, map_location="cpu", weights_only=False)
        reference.load_state_dict(checkpoint["state_dict"])
        reference.freeze()
        reference._no_state_dict = True
        return reference

    def generate_and_reward(
        self, batch, num_generations_per_item, mode="train", use_local_transformer_for_inference=False
    ):
        batch_size = self.whisper_settings.batch_size if self.whisper_settings else None
        with self.step_memory.phase("reward"), upstream_uses_working_transcription(batch_size):
            return super().generate_and_reward(
                batch,
                num_generations_per_item,
                mode=mode,
                use_local_transformer_for_inference=use_local_transformer_for_inference,
            )
