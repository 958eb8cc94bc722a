"""GRPO for EasyMagpieTTS (NeMo's decoder-only family, a Hugging Face causal-LM backbone) with the reward models
loaded from config: Whisper from `model.whisper` (in `whisper.dtype`), NeMo ASR and the speaker model from
`model.nemo_asr` / `model.speaker_verification`, each loaded once, frozen, in eval mode, out of the optimizer, out
of DDP and out of checkpoints (RewardModelsMixin). Whisper transcribes through the working batched helper.

NeMo 3.0.0's EasyMagpieTTSModelOnlinePO loads openai/whisper-large-v3 by name at two sites (its own __init__ and
EasyMagpieTTSModel's, for validation CER) with no dtype, so the dtype is whatever the installed transformers picks
(fp32 under 4.x, fp16 under 5.x); when the checkpoint's config asks for validation inference, the base class
loads Whisper (or parakeet) and TitaNet and the PO class loads them again, and the reference policy, built from the
same config, a third time. Its reward path calls `transcribe_with_whisper_from_filepaths`, which fails under
transformers 5. Only its __init__ is reproduced here (the loads replaced); the step is NeMo's own, with its
phases timed by wrapping the methods it calls.

Unlike MagpieTTS GRPO (nemo_ext/models/grpo_step.py, this project's step), this family keeps NeMo's step, and with
it the one place this project points names of NeMo's modules at its own helpers (nemo_ext/upstream_names.py): NeMo's
`training_step` generates, rewards, runs the forward and the backward and steps the optimizer in one method, so the
in-memory clips (`rollout_audio.rollouts_in_memory`) and the working Whisper helper
(`whisper_asr.upstream_uses_working_transcription`) reach it only through the names that method calls, for the
duration of that call. Its rollouts are NeMo's decoder's (`model.rollout_decoder` is MagpieTTS's)."""

from __future__ import annotations

import contextlib

import torch
from nemo.collections.tts.models import easy_magpietts as upstream_base
from nemo.collections.tts.models import easy_magpietts_preference_optimization as upstream
from nemo.collections.tts.models.easy_magpietts import EasyMagpieTTSModel
from nemo.collections.tts.models.easy_magpietts_preference_optimization import EasyMagpieTTSModelOnlinePO
from omegaconf import DictConfig, open_dict

from nemo_ext.grpo.across_ranks import rewards_of_all_ranks
from nemo_ext.grpo.advantages import easy_magpietts_advantages
from nemo_ext.grpo.losses import EASY_MAGPIETTS
from nemo_ext.models.dropout import disable_dropout
from nemo_ext.models.learning_health import GRPOLearningHealth
from nemo_ext.models.reward_models_mixin import RewardModelsMixin, frozen_reference_policy
from nemo_ext.rollout_audio import InMemoryClips, rollouts_in_memory
from nemo_ext.settings.fields import plain
from nemo_ext.settings.grpo import GRPOSettings
from nemo_ext.telemetry import phases
from nemo_ext.whisper_asr import upstream_uses_working_transcription

# NeMo's EasyMagpieTTS attribute names for what is never trained.
EASY_FROZEN_SUBMODULES = (
    "whisper_model",
    "_eval_asr_model",
    "_eval_speaker_verification_model",
    "_reference_model",
    "_utmos_calculator",
)


@contextlib.contextmanager
def _validation_models_not_loaded(cfg: DictConfig):
    """EasyMagpieTTSModel.__init__ loads Whisper large-v3 (or parakeet) and TitaNet by name when
    `run_val_inference` is set; with it off for the duration of that call, this class loads them once."""
    had_key, value = "run_val_inference" in cfg, cfg.get("run_val_inference")
    with open_dict(cfg):
        cfg.run_val_inference = False
    try:
        yield
    finally:
        with open_dict(cfg):
            if had_key:
                cfg.run_val_inference = value
            else:
                del cfg["run_val_inference"]


class EasyMagpieTTSOnlinePO(GRPOLearningHealth, RewardModelsMixin, EasyMagpieTTSModelOnlinePO):
    step_phases = phases.GRPO_PHASES
    frozen_submodule_names = EASY_FROZEN_SUBMODULES
    nemo_asr_attribute = "_eval_asr_model"
    speaker_verification_attribute = "_eval_speaker_verification_model"

    def __init__(self, cfg: DictConfig, trainer=None, settings: GRPOSettings | None = None):
        # NeMo 3.0.0's __init__ body, with the reward models from the stage's settings (built from code: parsed
        # from `cfg` by the same parser, before anything is built).
        settings = settings or GRPOSettings.parse(plain(cfg), EASY_MAGPIETTS)
        self.settings = settings
        rewards, easy = settings.rewards, settings.easy

        with _validation_models_not_loaded(cfg):
            EasyMagpieTTSModel.__init__(self, cfg, trainer)
        self._init_telemetry()
        self.run_val_inference = True  # as NeMo: validation always generates and scores
        self.automatic_optimization = False

        self.reference_free = settings.reference_free
        if not self.reference_free:
            self._reference_model = self._build_reference_model(cfg)

        self._eval_asr_model = None
        self.whisper_processor = None
        self.whisper_model = None
        if rewards.reward_asr_model == "nemo":
            self._load_nemo_asr(rewards.nemo_asr)
        else:
            self._load_whisper(rewards.whisper)
            self.use_multilingual_asr = True
        self._load_speaker_verification(rewards.speaker_verification)
        # use_utmos: EasyMagpieTTSModel.__init__ created the UTMOSv2 scorer already (NeMo creates a second one).

        self.loss_type = settings.loss_type
        self.scale_rewards = settings.scale_rewards
        self.max_decoder_steps = settings.max_decoder_steps
        self.aux_phoneme_loss_weight = easy["aux_phoneme_loss_weight"]
        self.po_groups_per_subbatch = max(int(easy["po_groups_per_subbatch"]), 1)
        self.batch_size_for_chunked_tf = easy["batch_size_for_chunked_tf"]
        self._normalize_whisper_transcript = rewards.normalize_whisper_transcript
        self._normalizer_cache = {}
        self.entropy_coeff = easy["entropy_coeff"]
        self.best_cer_threshold = rewards.best_cer_threshold
        self.worst_cer_threshold = rewards.worst_cer_threshold
        if self.trainer is not None and str(self.trainer.precision) in ("32", "32-true"):
            self.decoder.float()
        # Rollout and context clips stay in memory unless asked for as files (as MagpieTTS's GRPO). UTMOSv2 scores
        # the files of the audio folder itself, so with it on they are written as NeMo does.
        keep_in_memory = not settings.rollout_audio_files and not settings.switches["use_utmos"]
        self._rollout_clips = InMemoryClips() if keep_in_memory else None
        if settings.disable_dropout:
            disable_dropout(self)  # the policy and the reference inside it

    @staticmethod
    def _build_reference_model(cfg: DictConfig) -> EasyMagpieTTSModel:
        # Without the validation reward models and UTMOS: NeMo's reference, built from the policy's config, loads
        # them a third time.
        return frozen_reference_policy(EasyMagpieTTSModel, cfg, run_val_inference=False, use_utmos=False)

    # ---- the step's phases, timed around the methods NeMo's step calls ----
    def generate_and_reward(
        self, batch, num_generations_per_item, mode="train", use_local_transformer_for_inference=False
    ):
        # `reward` holds the whole rollout; its own seconds are NeMo's reward arithmetic.
        clips = self._rollout_clips
        with (
            self.step_anatomy.phase(phases.REWARD),
            rollouts_in_memory(clips, self.step_anatomy, self._eval_asr_model, module=upstream)
            if clips is not None
            else contextlib.nullcontext(),
        ):
            output = super().generate_and_reward(
                batch,
                num_generations_per_item,
                mode=mode,
                use_local_transformer_for_inference=use_local_transformer_for_inference,
            )
        if self.settings.reward_scaling == "batch":  # TRL's batch scaling, from NeMo's final rewards
            rewards = [item["reward"] for item in output["metrics"]]
            advantages = easy_magpietts_advantages(
                rewards, num_generations_per_item, "batch", rewards_of_all_ranks(rewards)
            )
            for item, advantage in zip(output["metrics"], advantages):
                item["advantage"] = advantage
            output["advantages"] = torch.tensor(advantages, device=self.device, dtype=torch.float32)
        self._record_rollouts(output, num_generations_per_item, mode)
        return output

    def rollout_clipped_at(self) -> int:
        # NeMo's own "too long" rule for this family (a rollout at or past it gets its group's minimum reward).
        longest = self.settings.easy["max_valid_codes_len"]
        return longest if longest is not None else self.max_decoder_steps * self.frame_stacking_factor - 1

    def _run_teacher_forced_chunked_po(self, *args, **kwargs):
        output = super()._run_teacher_forced_chunked_po(*args, **kwargs)
        self._record_learning({"learning/kl": float(output["kl_loss"]), "learning/entropy": float(output["entropy"])})
        return output

    def _save_waveforms_to_paths(self, *args, **kwargs):
        with self.step_anatomy.phase(phases.AUDIO_IO):
            return super()._save_waveforms_to_paths(*args, **kwargs)

    def _compute_pred_transcripts(self, predicted_audio_paths, batch_repeated, reward_asr_model):
        # NeMo ASR's transcribe is timed as `asr` where it is loaded (RewardModelsMixin); Whisper's helper times
        # itself (its file reading as `audio_io`).
        open_audio = self._rollout_clips.source if self._rollout_clips is not None else None
        working = upstream_uses_working_transcription(
            self.whisper_batch_size, self.step_anatomy, open_audio, module=upstream
        )
        with working:
            return super()._compute_pred_transcripts(predicted_audio_paths, batch_repeated, reward_asr_model)

    def _compute_speaker_embeddings_parallel(self, *args, **kwargs):
        with self.step_anatomy.phase(phases.SPEAKER_VERIFICATION):
            return super()._compute_speaker_embeddings_parallel(*args, **kwargs)

    def _run_easy_process_batch(self, model, *args, **kwargs):
        is_reference = model is getattr(self, "_reference_model", None)
        phase = phases.REFERENCE_FORWARD if is_reference else phases.POLICY_FORWARD
        with self.step_anatomy.phase(phase):
            return super()._run_easy_process_batch(model, *args, **kwargs)

    def _compute_po_losses_from_outputs(self, *args, **kwargs):
        # Ends where the backward begins (RewardModelsMixin.on_before_backward).
        self.step_anatomy.begin(phases.LOSS)
        return super()._compute_po_losses_from_outputs(*args, **kwargs)

    def training_step(self, batch, batch_idx):
        # Manual optimization: NeMo's step calls optimizer.step() itself (on_before_optimizer_step opens the
        # phase); its weight-update diagnostics after the update count as `optimizer` too.
        result = super().training_step(batch, batch_idx)
        self.step_anatomy.end_if_open(phases.OPTIMIZER)
        return result

    def validation_step(self, batch, batch_idx):
        with upstream_uses_working_transcription(self.whisper_batch_size, module=upstream_base):
            return super().validation_step(batch, batch_idx)
