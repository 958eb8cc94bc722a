"""GRPO (online preference optimization) with configurable, frozen reward models."""

from __future__ import annotations

import contextlib

from nemo.collections.tts.models import MagpieTTSModel
from nemo.collections.tts.models import magpietts_preference_optimization as upstream
from omegaconf import DictConfig

from nemo_ext.grpo.losses import MAGPIETTS
from nemo_ext.models.dropout import disable_dropout
from nemo_ext.models.grpo_step import GRPOStep
from nemo_ext.models.learning_health import GRPOLearningHealth
from nemo_ext.models.reward_models_mixin import RewardModelsMixin, frozen_reference_policy
from nemo_ext.random_state import RandomState
from nemo_ext.rollout_audio import InMemoryClips
from nemo_ext.settings.fields import plain
from nemo_ext.settings.grpo import GRPOSettings
from nemo_ext.settings.rollout_decoder import refuse_unsupported_architecture
from nemo_ext.telemetry import phases
from nemo_ext.telemetry.anatomy import StepAnatomy
from nemo_ext.telemetry.learning import policy_entropy


class ReferencePolicy(MagpieTTSModel):
    """The frozen reference policy of GRPO. With `replay` set, its next forward draws the random numbers the
    policy's forward drew (same dropout masks, same batches with the context dropped by `cfg_unconditional_prob`,
    same decoder-input corruption); the random streams then continue as if it had drawn none."""

    replay: RandomState | None = None
    anatomy: StepAnatomy | None = None  # the policy's, so this forward is timed as `reference_forward`

    def process_batch(self, batch):
        if self.anatomy is None:
            return self._forward(batch)
        with self.anatomy.phase(phases.REFERENCE_FORWARD):
            output = self._forward(batch)
        self.anatomy.begin(phases.LOSS)  # NeMo's loss arithmetic and logging follow, until the backward begins
        return output

    def _forward(self, batch):
        if self.replay is None:
            return super().process_batch(batch)
        after_policy = RandomState.capture()
        self.replay.restore()
        try:
            return super().process_batch(batch)
        finally:
            after_policy.restore()
            self.replay = None


class MagpieTTSOnlinePO(GRPOStep, GRPOLearningHealth, RewardModelsMixin, upstream.MagpieTTSModelOnlinePO):
    """NeMo's `MagpieTTSModelOnlinePO` with Whisper loaded from `model.whisper` (checkpoint and dtype) and the NeMo
    reward models from `model.nemo_asr` / `model.speaker_verification` (hub name or local `.nemo`). Its step is
    this project's (grpo_step.py); NeMo's class gives the model, the forward and the reward models' places."""

    step_phases = phases.GRPO_PHASES

    def __init__(self, cfg: DictConfig, trainer=None, settings: GRPOSettings | None = None):
        # Upstream's __init__ loads three hub models by hard-coded name, so its body (NeMo 3.0.0) is
        # reproduced here with configurable loaders; MagpieTTSModel's own __init__ runs unchanged. The values come
        # from the stage's settings (parsed once by the recipe); built from code, from `cfg` through the same
        # parser, before anything is built.
        settings = settings or GRPOSettings.parse(plain(cfg), MAGPIETTS)
        self.settings = settings
        rewards = settings.rewards

        MagpieTTSModel.__init__(self, cfg, trainer)
        self.rollout_decoder = settings.rollout_decoder
        refuse_unsupported_architecture(self, self.rollout_decoder)  # before the reference and reward models load
        self._init_telemetry()

        self.reference_free = settings.reference_free
        self.reference_policy_mode = settings.reference_policy_mode
        if not self.reference_free:
            self._reference_model = self._build_reference_model(cfg)
            self._reference_model.anatomy = self.step_anatomy

        if rewards.reward_asr_model == "nemo":
            self._load_nemo_asr(rewards.nemo_asr)
        # Upstream loads a second Whisper when both flags are set; one copy serves both uses.
        if rewards.loads_whisper:
            self._load_whisper(rewards.whisper)
        self._load_speaker_verification(rewards.speaker_verification)

        if settings.switches["use_pesq"]:  # torchaudio's presence was checked with the settings
            self.squim_objective_model = upstream.SQUIM_OBJECTIVE.get_model()
            self.squim_objective_model.requires_grad_(False)

        self.loss_type = settings.loss_type
        self.scale_rewards = settings.scale_rewards
        self.max_decoder_steps = settings.max_decoder_steps
        self._normalize_whisper_transcript = rewards.normalize_whisper_transcript
        self._normalizer_cache = {}
        # Rollout clips stay in memory unless asked for as files. PESQ reads them back with torchaudio.load (a
        # path it opens itself), so with PESQ on they are written as NeMo does.
        keep_in_memory = not settings.rollout_audio_files and not settings.switches["use_pesq"]
        self._rollout_clips = InMemoryClips() if keep_in_memory else None
        self.best_cer_threshold = rewards.best_cer_threshold
        self.worst_cer_threshold = rewards.worst_cer_threshold
        # NeMo's one update per rollout batch is Lightning's automatic optimization; several updates per rollout
        # batch step the optimizer here (policy_updates.py).
        self.automatic_optimization = settings.num_iterations == 1
        if settings.disable_dropout:
            disable_dropout(self)  # the policy and the reference inside it

    @staticmethod
    def _build_reference_model(cfg: DictConfig) -> MagpieTTSModel:
        return frozen_reference_policy(ReferencePolicy, cfg)

    def train(self, mode: bool = True):
        # NeMo's step calls self.eval() before the rollout and self.train() after it. Each call walks every module
        # (reward models and reference included): about 8 ms on the tiny CPU model, the largest part of the step
        # the phases did not cover. It belongs to the rollout, so it is timed as `reward`.
        anatomy = getattr(self, "step_anatomy", None)
        with anatomy.phase(phases.REWARD) if anatomy is not None else contextlib.nullcontext():
            # The mixin keeps every frozen submodule in eval mode. NeMo's reference follows the policy's mode (its
            # reward step ends with self.train()): `train` and `matched` keep that, `eval` does not.
            super().train(mode)
            reference = getattr(self, "_reference_model", None)
            if reference is not None and getattr(self, "reference_policy_mode", "matched") != "eval":
                reference.train(mode)
        return self

    def process_batch(self, batch):
        # NeMo's GRPO step runs the policy's forward, then the reference's on the same batch: in `matched` mode
        # the reference replays this forward's random draws, so both see the same inputs (context kept or
        # dropped for the same items) and at step 1, where the weights are equal, the KL is exactly 0.
        if self.reference_policy_mode == "matched" and not self.reference_free:
            self._reference_model.replay = RandomState.capture()
        with self.step_anatomy.phase(phases.POLICY_FORWARD):
            output = super().process_batch(batch)
            if self._learning_step is not None:
                # The decoder's codebook distributions (NeMo's loss reads `logits` unless a local-transformer
                # rollout was drawn, use_local_transformer_prob, default 0).
                self._record_learning(
                    {
                        "learning/entropy": policy_entropy(
                            output["logits"],
                            output["loss_mask"],
                            self.num_audio_codebooks,
                            self.num_all_tokens_per_codebook,
                            self.frame_stacking_factor,
                        )
                    }
                )
        if self.reference_free:
            self.step_anatomy.begin(phases.LOSS)  # ends where the backward begins (RewardModelsMixin)
        return output
