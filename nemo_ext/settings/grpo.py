"""GRPO's typed settings (both model families), read from the `model` node with NeMo's code defaults for absent
keys, and the ranges whose bad values silently change the experiment or fail only at the first step."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass

from nemo_ext.errors import ConfigError
from nemo_ext.grpo.advantages import SCALINGS, scaling
from nemo_ext.grpo.losses import EASY_MAGPIETTS, MAGPIETTS, loss_type_names
from nemo_ext.grpo.reward_terms import RewardTerm, reward_terms
from nemo_ext.settings import rules
from nemo_ext.settings.reward_models import DEFAULT_NEMO_ASR, DEFAULT_SPEAKER_VERIFICATION, NemoModelSettings
from nemo_ext.settings.rollout_decoder import INCREMENTAL, ROLLOUT_DECODERS
from nemo_ext.settings.whisper import WhisperSettings

REWARD_ASR_MODELS = ("nemo", "whisper")
# How the frozen reference policy runs its forward in a MagpieTTS GRPO step (nemo_ext/models/online_po.py):
# matched (ours): train mode, replaying the policy forward's random draws; eval: no dropout, never drops the
# context; train: NeMo 3.0.0 (train mode, its own random draws).
REFERENCE_POLICY_MODES = ("matched", "eval", "train")
PHONEME_SAMPLING_METHODS = ("argmax", "multinomial")

# Keys both families read, with NeMo 3.0.0's code defaults (tests/test_settings.py compares them with NeMo's source).
COMMON_RULES = {
    "n_generations_per_item": rules.integer(
        6, minimum=2, why="a group of one rollout has no reward spread: every advantage is 0 and nothing is learned"
    ),
    "reference_free": rules.boolean(False),
    "inference_temperature": rules.number(0.7, above=0.0, why="the sampling temperature of the rollouts"),
    "inference_topk": rules.integer(80, minimum=1),
    "inference_cfg_prob": rules.number(0.0, minimum=0.0, maximum=1.0, why="a probability"),
    "inference_cfg_scale": rules.number(1.0, above=0.0),
    "use_local_transformer_prob": rules.number(0.0, minimum=0.0, maximum=1.0, why="a probability"),
    "rollout_audio_files": rules.boolean(False),
    # TRL's disable_dropout: every dropout module of the policy and the reference at p = 0 (nemo_ext/models/dropout.py)
    "disable_dropout": rules.boolean(False),
    "reward_asr_model": rules.choice("nemo", REWARD_ASR_MODELS),
    "normalize_whisper_transcript": rules.boolean(True),
    "mean_cer_dataset": rules.number(
        0.1, above=0.0, below=1.0, why="NeMo's CER reward divides by it and by 1 minus it"
    ),
    "mean_ssim_dataset": rules.number(0.6, above=0.0, maximum=1.0, why="NeMo's similarity reward divides by it"),
    "best_ssim_achievable": rules.number(0.9, above=0.0, maximum=1.0),
    "best_cer_threshold": rules.number(
        1.0, minimum=0.0, maximum=1.0, why="a group whose best CER is above it is left out of the loss"
    ),
    "worst_cer_threshold": rules.number(
        1.0, minimum=0.0, maximum=1.0, why="a group whose worst CER is above it is left out of the loss"
    ),
}
MAGPIETTS_RULES = {
    **COMMON_RULES,
    # Several updates per rollout batch (TRL's num_iterations, epsilon, epsilon_high; this project's keys).
    "num_iterations": rules.integer(1, minimum=1, why="optimizer steps per rollout batch"),
    "epsilon": rules.number(
        0.2, above=0.0, below=1.0, why="the importance ratio is clipped to [1 - epsilon, 1 + epsilon_high]"
    ),
    "epsilon_high": rules.number(None, above=0.0, none=True, why="null: epsilon"),
    "skip_zero_std_groups": rules.boolean(False),
    # num_iterations > 1: each later update replays the first update's random draws (dropout masks, context drops,
    # decoder-input corruption); false draws anew in every forward.
    "replay_random_draws": rules.boolean(True),
    # TRL's truncated importance-sampling correction (vllm_importance_sampling_correction, token_truncate): each
    # frame's policy loss weighted by min(pi_policy / pi_sampling, importance_sampling_cap).
    "importance_sampling_correction": rules.boolean(False),
    "importance_sampling_cap": rules.number(
        2.0, above=0.0, why="C of min(pi_policy / pi_sampling, C), TRL's vllm_importance_sampling_cap"
    ),
    # NeMo's training_step calls torch.cuda.empty_cache() first thing; false skips that call (the allocator keeps
    # its cached blocks between steps). Measured by scripts/gpu_report.sh.
    "empty_cuda_cache_every_step": rules.boolean(True),
    "grpo_beta": rules.number(
        None, minimum=0.0, why="the KL weight; NeMo has no default and fails at step 1 without one"
    ),
    "max_decoder_steps": rules.integer(430, minimum=1, why="the longest rollout, in decoder steps"),
    "reference_policy_mode": rules.choice("matched", REFERENCE_POLICY_MODES),
    "use_kv_cache_during_online_po": rules.boolean(False),
    "rollout_decoder": rules.choice("incremental", ROLLOUT_DECODERS),
    "load_whisper_model": rules.boolean(False),
    "use_pesq": rules.boolean(False),
}
EASY_RULES = {
    **COMMON_RULES,
    "grpo_beta": rules.number(0.0, minimum=0.0, why="the KL weight"),
    "max_decoder_steps": rules.integer(220, minimum=1, why="the longest rollout, in decoder steps"),
    "use_utmos": rules.boolean(False),
    "entropy_coeff": rules.number(0.0, minimum=0.0),
    "max_grad_norm": rules.number(0.0, minimum=0.0, why="0 turns clipping off"),
    "po_groups_per_subbatch": rules.integer(1, minimum=1),
    "batch_size_for_chunked_tf": rules.integer(4, minimum=1, none=True),
    "aux_phoneme_loss_weight": rules.number(1.0, minimum=0.0),
    "gt_phoneme_input_prob": rules.number(0.0, minimum=0.0, maximum=1.0, why="a probability"),
    "inference_phoneme_sampling_method": rules.choice("argmax", PHONEME_SAMPLING_METHODS),
    "min_valid_codes_len": rules.integer(4, minimum=0),
    "max_valid_codes_len": rules.integer(None, minimum=1, none=True),
    "mean_utmos_dataset": rules.number(3.5, above=1.0, maximum=5.0, why="on UTMOS's 1-5 scale, above 1"),
    "best_utmos_achievable": rules.number(4.5, minimum=1.0, maximum=5.0, why="on UTMOS's 1-5 scale"),
}
FAMILY_RULES = {MAGPIETTS: MAGPIETTS_RULES, EASY_MAGPIETTS: EASY_RULES}
# The package each optional reward model needs (NeMo's HAVE_TORCHAUDIO / HAVE_UTMOSV2, asked without importing NeMo).
SWITCH_NEEDS = {"use_pesq": "torchaudio", "use_utmos": "utmosv2"}
# NeMo's boolean (true = group, false = none) or TRL's names.
SCALE_REWARDS = (True, False, *SCALINGS)


LOGPROB_TEMPERATURES = ("sampling", 1.0)


def _logprob_temperature(value):
    """`model.logprob_temperature`: `sampling` (the rollouts' temperature and top-k) or 1.0 (NeMo's)."""
    if value == "sampling":
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value) == 1.0:
        return 1.0
    raise ConfigError("model.logprob_temperature", value, "sampling or 1.0")


def _importance_sampling_cap(read) -> float | None:
    """`model.importance_sampling_correction` with its cap: None when off. The correction weighs each frame by the
    log-prob the rollout decoder recorded when it drew the code; only this project's decoder records them, and not
    for the local transformer's draws."""
    cap = read("importance_sampling_cap")
    if not read("importance_sampling_correction"):
        return None
    decoder = read("rollout_decoder")
    if decoder != INCREMENTAL:
        raise ConfigError(
            "model.importance_sampling_correction",
            True,
            f"false with model.rollout_decoder={decoder} (only {INCREMENTAL} records each sampled code's log-prob)",
        )
    local = read("use_local_transformer_prob")
    if local > 0:
        raise ConfigError(
            "model.importance_sampling_correction",
            True,
            f"false with model.use_local_transformer_prob={local:g} (the local transformer's draws record no "
            "log-probs)",
        )
    return cap


@dataclass(frozen=True)
class RewardSettings:
    reward_asr_model: str
    whisper: WhisperSettings
    nemo_asr: NemoModelSettings
    speaker_verification: NemoModelSettings
    load_whisper_model: bool
    normalize_whisper_transcript: bool
    weights: Mapping[str, float]  # reward term -> weight (every registered term of the family)
    mean_cer_dataset: float
    mean_ssim_dataset: float
    best_ssim_achievable: float
    best_cer_threshold: float
    worst_cer_threshold: float

    @property
    def loads_whisper(self) -> bool:
        return self.reward_asr_model == "whisper" or self.load_whisper_model


@dataclass(frozen=True)
class GRPOSettings:
    family: str
    n_generations_per_item: int
    grpo_beta: float
    loss_type: str
    scale_rewards: bool
    reference_free: bool
    max_decoder_steps: int
    inference_temperature: float
    inference_topk: int
    inference_cfg_prob: float
    inference_cfg_scale: float
    use_local_transformer_prob: float
    rollout_audio_files: bool
    rewards: RewardSettings
    switches: Mapping[str, bool]  # use_pesq / use_utmos
    reference_policy_mode: str = "eval"  # MagpieTTS: matched | eval | train; EasyMagpieTTS's reference runs in eval
    use_kv_cache_during_online_po: bool = False
    rollout_decoder: str = "nemo"  # MagpieTTS: one of ROLLOUT_DECODERS; EasyMagpieTTS decodes with NeMo's code
    easy: Mapping[str, object] | None = None  # EasyMagpieTTS's further keys (entropy_coeff, max_grad_norm, ...)
    reward_scaling: str = "group"  # scale_rewards as one of group | batch | none
    num_iterations: int = 1
    empty_cuda_cache_every_step: bool = True
    epsilon: float = 0.2
    epsilon_high: float = 0.2
    skip_zero_std_groups: bool = False
    replay_random_draws: bool = True
    disable_dropout: bool = False
    # "sampling": the update scores the rollouts under their sampling temperature and top-k; 1.0: NeMo's logits as
    # they are (nemo_ext/grpo/policy_loss.py::RolloutScoring)
    logprob_temperature: str | float = 1.0
    # TRL's truncated importance-sampling correction: None (off) or its cap C (nemo_ext/grpo/policy_loss.py)
    importance_sampling_cap: float | None = None

    def reward_terms(self) -> tuple[RewardTerm, ...]:
        return reward_terms(self.family)

    def active_reward_terms(self) -> tuple[RewardTerm, ...]:
        """Terms that contribute: a weight > 0 and, where a term needs a switch, the switch on."""
        return tuple(
            term
            for term in self.reward_terms()
            if self.rewards.weights[term.name] > 0 and (term.enabled_by is None or self.switches[term.enabled_by])
        )

    @classmethod
    def parse(cls, node: Mapping, family: str) -> GRPOSettings:
        """From a `model` node (the recipe's, or the config a model is built from in code)."""
        family_rules = FAMILY_RULES[family]

        def read(name):
            return family_rules[name].read(node, name)

        loss_type = rules.choice("grpo", loss_type_names(family)).read(node, "loss_type")
        scale = node.get("scale_rewards", True)
        # By type as well as value: 1.0 == True in Python, and 1.0 passed as "group" to NeMo's class but read as
        # unscaled here.
        if not isinstance(scale, bool | str) or scale not in SCALE_REWARDS:
            raise ConfigError("model.scale_rewards", scale, "group, batch, none (or NeMo's true = group, false = none)")
        terms = reward_terms(family)
        weights = {
            term.name: rules.number(term.default_weight, minimum=0.0).read(node, term.weight_key) for term in terms
        }
        switches = {name: read(name) for name in SWITCH_NEEDS if name in family_rules}
        for switch, on in switches.items():
            if on and importlib.util.find_spec(SWITCH_NEEDS[switch]) is None:
                what = "PESQ" if switch == "use_pesq" else "UTMOSv2"
                raise ConfigError(
                    f"model.{switch}",
                    True,
                    f"false (the {what} reward needs {SWITCH_NEEDS[switch]}, not installed here)",
                )
        for term in terms:
            if term.enabled_by and weights[term.name] > 0 and not switches.get(term.enabled_by, False):
                raise ConfigError(
                    f"model.{term.weight_key}",
                    weights[term.name],
                    f"0 unless model.{term.enabled_by}=true (without it the {term.name} reward is never computed)",
                )
        effective = [
            w
            for t, w in ((t, weights[t.name]) for t in terms)
            if w > 0 and (not t.enabled_by or switches[t.enabled_by])
        ]
        if not effective:
            keys = ", ".join(f"model.{t.weight_key}" for t in terms)
            raise ConfigError(
                f"model.{terms[0].weight_key}",
                weights[terms[0].name],
                f"a weight > 0 on at least one of {keys} (all are 0: every reward is equal)",
            )
        reward_asr = read("reward_asr_model")
        mean_ssim, best_ssim = read("mean_ssim_dataset"), read("best_ssim_achievable")
        if best_ssim <= mean_ssim:
            raise ConfigError(
                "model.best_ssim_achievable",
                best_ssim,
                f"a number > model.mean_ssim_dataset ({mean_ssim:g}): NeMo's similarity reward divides by their gap",
            )
        rewards = RewardSettings(
            reward_asr_model=reward_asr,
            whisper=WhisperSettings.parse(node.get("whisper")),
            nemo_asr=NemoModelSettings.parse(node.get("nemo_asr"), "model.nemo_asr", DEFAULT_NEMO_ASR),
            speaker_verification=NemoModelSettings.parse(
                node.get("speaker_verification"), "model.speaker_verification", DEFAULT_SPEAKER_VERIFICATION
            ),
            load_whisper_model=read("load_whisper_model") if "load_whisper_model" in family_rules else False,
            normalize_whisper_transcript=read("normalize_whisper_transcript"),
            weights=weights,
            mean_cer_dataset=read("mean_cer_dataset"),
            mean_ssim_dataset=mean_ssim,
            best_ssim_achievable=best_ssim,
            best_cer_threshold=read("best_cer_threshold"),
            worst_cer_threshold=read("worst_cer_threshold"),
        )
        grpo_beta = read("grpo_beta")
        if grpo_beta is None:
            raise ConfigError("model.grpo_beta", None, "a number >= 0 (the KL weight; NeMo has no default)")
        settings = dict(
            family=family,
            n_generations_per_item=read("n_generations_per_item"),
            grpo_beta=grpo_beta,
            loss_type=loss_type,
            scale_rewards=scale in (True, "group"),  # NeMo's attribute: divide by the group's std or not
            reward_scaling=scaling(scale),
            reference_free=read("reference_free"),
            max_decoder_steps=read("max_decoder_steps"),
            inference_temperature=read("inference_temperature"),
            inference_topk=read("inference_topk"),
            inference_cfg_prob=read("inference_cfg_prob"),
            inference_cfg_scale=read("inference_cfg_scale"),
            use_local_transformer_prob=read("use_local_transformer_prob"),
            rollout_audio_files=read("rollout_audio_files"),
            disable_dropout=read("disable_dropout"),
            rewards=rewards,
            switches=switches,
        )
        if family == MAGPIETTS:
            epsilon = read("epsilon")
            epsilon_high = read("epsilon_high")
            if epsilon_high is not None and epsilon_high < epsilon:
                raise ConfigError(
                    "model.epsilon_high", epsilon_high, f"null or a number >= model.epsilon ({epsilon:g})"
                )
            settings.update(
                reference_policy_mode=read("reference_policy_mode"),
                use_kv_cache_during_online_po=read("use_kv_cache_during_online_po"),
                rollout_decoder=read("rollout_decoder"),
                num_iterations=read("num_iterations"),
                epsilon=epsilon,
                epsilon_high=epsilon if epsilon_high is None else epsilon_high,
                skip_zero_std_groups=read("skip_zero_std_groups"),
                replay_random_draws=read("replay_random_draws"),
                logprob_temperature=_logprob_temperature(node.get("logprob_temperature", 1.0)),
                importance_sampling_cap=_importance_sampling_cap(read),
                empty_cuda_cache_every_step=read("empty_cuda_cache_every_step"),
            )
        else:
            extra = {name: read(name) for name in EASY_RULES if name not in COMMON_RULES and name not in settings}
            extra.pop("grpo_beta", None)
            extra.pop("max_decoder_steps", None)
            extra.pop("use_utmos", None)
            low, high = extra["min_valid_codes_len"], extra["max_valid_codes_len"]
            if high is not None and high <= low:
                raise ConfigError(
                    "model.max_valid_codes_len", high, f"null or an integer > model.min_valid_codes_len ({low})"
                )
            settings["easy"] = extra
        return cls(**settings)
