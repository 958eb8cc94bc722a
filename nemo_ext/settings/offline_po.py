"""Offline PO's typed settings: DataGen (generate and score), DPO (train on pairs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nemo_ext.errors import ConfigError
from nemo_ext.settings import rules
from nemo_ext.settings.grpo import REFERENCE_POLICY_MODES
from nemo_ext.settings.reward_models import DEFAULT_NEMO_ASR, DEFAULT_SPEAKER_VERIFICATION, NemoModelSettings
from nemo_ext.settings.rollout_decoder import ROLLOUT_DECODERS
from nemo_ext.settings.whisper import WhisperSettings

DPO_LOSS_TYPES = ("dpo", "ipo", "rpo", "rpo_sq")

DATAGEN_RULES = {
    "pref_set_language": rules.Rule("text", "en"),
    "normalize_whisper_transcript": rules.boolean(True),
    "max_decoder_steps": rules.integer(500, minimum=1, why="the longest generation, in decoder steps"),
    "inference_temperature": rules.number(0.7, above=0.0),
    "inference_topk": rules.integer(80, minimum=1),
    "inference_use_cfg": rules.boolean(False),
    "inference_cfg_scale": rules.number(1.0, above=0.0),
    "use_kv_cache_for_inference": rules.boolean(False),
    "rollout_decoder": rules.choice("incremental", ROLLOUT_DECODERS),
    "datagen_seed": rules.integer(None, minimum=0, none=True),
}
DPO_RULES = {
    "dpo_beta": rules.number(0.01, above=0.0, why="the preference loss's temperature; at 0 it learns nothing"),
    "dpo_loss_type": rules.choice("dpo", DPO_LOSS_TYPES),
    "dpo_pref_loss_weight": rules.number(1.0, minimum=0.0),
    "dpo_sft_loss_weight": rules.number(0.0, minimum=0.0),
    # TRL's disable_dropout (on by default in TRL's DPO; here NeMo's behaviour, off): nemo_ext/models/dropout.py
    "disable_dropout": rules.boolean(False),
    # How the frozen reference runs its forwards (nemo_ext/models/offline_po.py), as GRPO's key: matched (ours: the
    # policy's mode, replaying the policy forward's random draws on the same batch), train (the policy's mode, draws
    # of its own), eval (NeMo 3.0.0's DPO: no dropout, the context never dropped).
    "reference_policy_mode": rules.choice("matched", REFERENCE_POLICY_MODES),
}


@dataclass(frozen=True)
class DataGenSettings:
    pref_set_language: str
    load_whisper_model: bool  # resolved: null means "exactly when the language is not English"
    normalize_whisper_transcript: bool
    max_decoder_steps: int
    inference_temperature: float
    inference_topk: int
    inference_use_cfg: bool
    inference_cfg_scale: float
    use_kv_cache_for_inference: bool
    rollout_decoder: str
    datagen_seed: int | None
    whisper: WhisperSettings
    nemo_asr: NemoModelSettings
    speaker_verification: NemoModelSettings

    @property
    def scored_with_whisper(self) -> bool:
        return self.pref_set_language != "en"

    @property
    def resolved_model_keys(self) -> dict:
        """`model.*` values resolved here, for NeMo's class to read as well."""
        return {"load_whisper_model": self.load_whisper_model}

    @classmethod
    def parse(cls, node: Mapping) -> DataGenSettings:
        values = rules.read_fields(cls, node, DATAGEN_RULES)
        language = values["pref_set_language"]
        load_whisper = node.get("load_whisper_model")
        if load_whisper is None:
            load_whisper = language != "en"
        load_whisper = rules.boolean().read({"load_whisper_model": load_whisper}, "load_whisper_model")
        if language != "en" and not load_whisper:
            raise ConfigError(
                "model.load_whisper_model",
                False,
                f"true or null (pref_set_language={language!r} is scored with Whisper)",
            )
        return cls(
            **values,
            load_whisper_model=load_whisper,
            whisper=WhisperSettings.parse(node.get("whisper")),
            nemo_asr=NemoModelSettings.parse(node.get("nemo_asr"), "model.nemo_asr", DEFAULT_NEMO_ASR),
            speaker_verification=NemoModelSettings.parse(
                node.get("speaker_verification"), "model.speaker_verification", DEFAULT_SPEAKER_VERIFICATION
            ),
        )


@dataclass(frozen=True)
class DPOSettings:
    dpo_beta: float
    dpo_loss_type: str
    dpo_pref_loss_weight: float
    dpo_sft_loss_weight: float
    disable_dropout: bool
    reference_policy_mode: str
    whisper: WhisperSettings  # accepted (one set of launcher overrides serves every stage) and checked, never loaded

    @classmethod
    def parse(cls, node: Mapping) -> DPOSettings:
        values = rules.read_fields(cls, node, DPO_RULES)
        if values["dpo_pref_loss_weight"] == 0 and values["dpo_sft_loss_weight"] == 0:
            raise ConfigError(
                "model.dpo_pref_loss_weight", 0.0, "a weight > 0 here or in model.dpo_sft_loss_weight (both are 0)"
            )
        return cls(**values, whisper=WhisperSettings.parse(node.get("whisper")))
