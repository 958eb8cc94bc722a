"""What the PO subclasses share: loading reward models from config, keeping them frozen, in eval mode and out
of the optimizer."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig, open_dict

from nemo_ext.checkpoints import configs_in_checkpoints_allowed
from nemo_ext.errors import ConfigError
from nemo_ext.models.rollout_decoding import decode
from nemo_ext.reward_models import load_nemo_asr_model, load_speaker_verification_model
from nemo_ext.settings.reward_models import NemoModelSettings
from nemo_ext.settings.rollout_decoder import NEMO
from nemo_ext.settings.whisper import WhisperSettings
from nemo_ext.telemetry import phases
from nemo_ext.telemetry.anatomy import StepAnatomy
from nemo_ext.whisper_asr import load_whisper

# Submodules that are never trained. Upstream only calls .eval() on Whisper once, so Lightning's
# model.train() at the start of fit switched it back to training mode and its parameters kept
# requires_grad=True (in the optimizer, and a gradient bucket of their own under DDP).
FROZEN_SUBMODULES = (
    "whisper_model",
    "eval_asr_model",
    "eval_speaker_verification_model",
    "_reference_model",
    "squim_objective_model",
)


def frozen_reference_policy(model_class, cfg: DictConfig, **config_overrides):
    """NeMo's reference policy: `model_class` built from the policy's config without datasets (and with
    `config_overrides`), loaded from `cfg.reference_model_ckpt_path`, frozen, and left out of state dicts. The
    checkpoint is read with OmegaConf's config classes allowed (NeMo's plain torch.load refuses a Lightning
    checkpoint under torch >= 2.6)."""
    ref_cfg = copy.deepcopy(cfg)
    with open_dict(ref_cfg):
        ref_cfg.train_ds = None
        ref_cfg.validation_ds = None
        for key, value in config_overrides.items():
            ref_cfg[key] = value
    reference = model_class(cfg=ref_cfg)
    with configs_in_checkpoints_allowed():
        checkpoint = torch.load(cfg.reference_model_ckpt_path, map_location="cpu")
    reference.load_state_dict(checkpoint["state_dict"])
    reference.freeze()
    reference._no_state_dict = True
    return reference


class RewardModelsMixin:
    """Mixed in before a MagpieTTSModel (or EasyMagpieTTSModel) subclass. The attribute names are NeMo's for
    that family (EasyMagpieTTS keeps its reward models under `_eval_*`)."""

    step_phases: tuple[str, ...] = ()  # the step's phases (telemetry/phases.py), declared by each model class
    whisper_settings: WhisperSettings | None = None
    whisper_dtype_at_load: torch.dtype | None = None
    frozen_submodule_names: tuple[str, ...] = FROZEN_SUBMODULES
    nemo_asr_attribute = "eval_asr_model"
    speaker_verification_attribute = "eval_speaker_verification_model"

    @property
    def whisper_batch_size(self) -> int | None:
        """Clips per Whisper generate() call (`model.whisper.batch_size`); None: all at once, or no Whisper."""
        return self.whisper_settings.batch_size if self.whisper_settings else None

    def declared_phases(self) -> tuple[str, ...]:
        """The class's phases, and those of the reward terms this project computes (before `other`)."""
        settings = getattr(self, "settings", None)
        terms = settings.active_reward_terms() if hasattr(settings, "active_reward_terms") else ()
        extra = [t.phase for t in terms if not t.computed_by_nemo and t.phase not in self.step_phases]
        return (*self.step_phases[:-1], *dict.fromkeys(extra), self.step_phases[-1])

    def _init_telemetry(self) -> None:
        """Phase timing (off until the telemetry callback switches it on). The codec decode runs inside NeMo's
        infer_batch: it is timed where infer_batch calls it."""
        self.step_anatomy = StepAnatomy(phases=self.declared_phases())
        helper = self._codec_helper
        helper.codes_to_audio = self.step_anatomy.wrap(phases.CODEC_DECODE, helper.codes_to_audio)

    # Who decodes (nemo_ext/models/rollout_decoding.py); the stages set it from `model.rollout_decoder`.
    rollout_decoder: str = NEMO

    def infer_batch(self, batch, use_cfg=False, **options):
        with self.step_anatomy.phase(phases.GENERATION):
            output = decode(self, super().infer_batch, self.rollout_decoder, batch, use_cfg=use_cfg, **options)
        # Each sampled code's log-probability under the distribution it was drawn from (our decoder only), and the
        # decoding steps the batch ran (every decoder reports them).
        self.last_rollout_logprobs = getattr(output, "sampled_logprobs", None)
        self.last_rollout_steps = output.rtf_metrics.get("max_frames_generated")
        return output

    def on_before_backward(self, loss):
        super().on_before_backward(loss)
        self.step_anatomy.end_if_open(phases.LOSS)
        self.step_anatomy.begin(phases.BACKWARD)

    def on_after_backward(self):
        self.step_anatomy.end(phases.BACKWARD)
        super().on_after_backward()

    def on_before_optimizer_step(self, optimizer):
        super().on_before_optimizer_step(optimizer)
        self.step_anatomy.begin(phases.OPTIMIZER)

    def optimizer_step(self, *args, **kwargs):
        # The closure (training step and backward) runs inside; the update itself follows on_before_optimizer_step.
        result = super().optimizer_step(*args, **kwargs)
        self.step_anatomy.end_if_open(phases.OPTIMIZER)
        return result

    def _load_whisper(self, settings: WhisperSettings) -> None:
        self.whisper_settings = settings
        if settings.on_ctranslate2:
            # CTranslate2 loads straight onto a device, which is known once the trainer sets the module up.
            self.whisper_processor, self.whisper_model = None, None
            return
        self.whisper_processor, self.whisper_model = load_whisper(settings)
        self.whisper_dtype_at_load = self.whisper_model.dtype

    def _load_ct2_whisper_on(self, device: torch.device) -> None:
        from nemo_ext.whisper_ct2 import load_ct2_whisper

        settings = self.whisper_settings
        if settings is None or not settings.on_ctranslate2 or self.whisper_model is not None:
            return
        self.use_whisper(*load_ct2_whisper(settings.pretrained, settings.dtype, str(device)))

    def use_whisper(self, processor, model) -> None:
        """Make (processor, model) the Whisper pair the reward uses: a torch module or a CTranslate2 one (a plain
        attribute, so any torch module registered under the name is dropped first)."""
        self._modules.pop("whisper_model", None)
        self.whisper_processor, self.whisper_model = processor, model

    def _load_nemo_asr(self, settings: NemoModelSettings) -> None:
        model = load_nemo_asr_model(settings)
        # NeMo calls it by file paths: reading the files is part of this phase.
        model.transcribe = self.step_anatomy.wrap(phases.ASR, model.transcribe)
        setattr(self, self.nemo_asr_attribute, model)

    def _load_speaker_verification(self, settings: NemoModelSettings) -> None:
        setattr(self, self.speaker_verification_attribute, load_speaker_verification_model(settings))

    def frozen_submodules(self) -> dict[str, torch.nn.Module]:
        # Modules only: EasyMagpieTTS's UTMOSv2 scorer is a plain object (nothing to freeze or keep out of DDP).
        return {
            name: getattr(self, name)
            for name in self.frozen_submodule_names
            if isinstance(getattr(self, name, None), torch.nn.Module)
        }

    def setup(self, stage: str | None = None):
        # Runs before Lightning wraps the model in DDP (Trainer._run: setup hook, then strategy.setup).
        super().setup(stage)
        if self._trainer is not None:
            self._load_ct2_whisper_on(self.trainer.strategy.root_device)
        self._ddp_params_and_buffers_to_ignore = self.names_outside_ddp()

    def on_train_batch_start(self, batch, batch_idx):
        self._keep_new_buffers_outside_ddp()
        return super().on_train_batch_start(batch, batch_idx)

    def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._keep_new_buffers_outside_ddp()
        return super().on_validation_batch_start(batch, batch_idx, dataloader_idx)

    def _keep_new_buffers_outside_ddp(self) -> None:
        # NeMo ASR registers `encoder.seq_range` at its first transcribe(), after DDP was set up. DDP re-reads the
        # module's buffers before every forward and skips the names in `parameters_to_ignore`: add the new ones.
        wrapper = getattr(self._trainer.strategy, "model", None) if self._trainer is not None else None
        ignored = getattr(wrapper, "parameters_to_ignore", None)
        if isinstance(ignored, set):
            ignored.update(self.names_outside_ddp())

    def names_outside_ddp(self) -> list[str]:
        """Every parameter and buffer of the frozen models (reward models, reference, codec). DDP neither
        broadcasts nor all-reduces them: each rank loads the same files, and a buffer NeMo ASR's transcribe() leaves
        as an inference tensor (`encoder.seq_range`) made DDP's per-step buffer sync raise "Inference tensors do
        not track version counter" at step 2."""
        modules = dict(self.frozen_submodules())
        if getattr(self, "_codec_model", None) is not None:
            modules["_codec_model"] = self._codec_model
        names = []
        for prefix, module in modules.items():
            names += [f"{prefix}.{name}" for name, _ in module.named_parameters()]
            names += [f"{prefix}.{name}" for name, _ in module.named_buffers()]
        return names

    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.frozen_submodules().values():
            module.eval()
        return self

    def _get_state_dict_keys_to_exclude(self):
        # MagpieTTSModel uses this list for both checkpoints and optimizer param groups.
        return list(super()._get_state_dict_keys_to_exclude()) + list(self.frozen_submodule_names)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # A checkpoint from NeMo's own PO recipe holds optimizer state for the reward models too (NeMo never
        # freezes Whisper): Lightning would fail later with "loaded state dict contains a parameter group that
        # doesn't match the size of optimizer's group". Say what to do instead, before anything is restored.
        states = checkpoint.get("optimizer_states") or []
        if states:
            saved = sum(len(group["params"]) for group in states[0].get("param_groups", []))
            self.setup_optimizer_param_groups()
            ours = sum(len(group["params"]) for group in self._optimizer_param_groups)
            if saved != ours:
                raise ConfigError(
                    "checkpoint",
                    f"optimizer state for {saved} parameters",
                    f"a checkpoint of this project (optimizer state for {ours} parameters). A checkpoint from "
                    "NeMo's own PO recipe cannot continue here; start a new run from its weights with "
                    "init_from_ptl_ckpt=<that file>",
                )
        super().on_load_checkpoint(checkpoint)

    def setup_optimizer_param_groups(self):
        super().setup_optimizer_param_groups()
        for group in self._optimizer_param_groups:
            group["params"] = [p for p in group["params"] if p.requires_grad]
