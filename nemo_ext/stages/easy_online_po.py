"""Online PO (GRPO) of EasyMagpieTTS (NeMo's decoder-only family): `trainer.fit` of EasyMagpieTTSOnlinePO."""

from nemo_ext.errors import ConfigError
from nemo_ext.grpo.losses import EASY_MAGPIETTS as EASY_FAMILY
from nemo_ext.settings.grpo import GRPOSettings
from nemo_ext.settings.model_keys import EASY_GRPO_KEYS, EASY_MAGPIETTS
from nemo_ext.stages.stage import MAGPIETTS_DATASET, TRAINING_MANIFESTS, TRAINING_PATHS, Loop, Stage

# Several updates per rollout batch and skipped groups need the GRPO step itself changed; NeMo's EasyMagpieTTS step
# generates, runs its chunked forward/backward and steps the optimizer in one method (a copy would be most of it).
UNSUPPORTED = (
    "EasyMagpieTTS GRPO runs NeMo's own step (rollouts, chunked forward/backward and the optimizer step in one "
    "method); MagpieTTS GRPO (recipes/online_po.py) has this key"
)


def _no_lightning_clipping(settings) -> None:
    # NeMo's EasyMagpieTTS GRPO optimizes manually: Lightning refuses gradient_clip_val only once fit() starts,
    # after every model is built.
    clip = settings.trainer.arguments.get("gradient_clip_val")
    if clip not in (None, 0, 0.0):
        raise ConfigError(
            "trainer.gradient_clip_val",
            clip,
            "null (this stage optimizes manually, as NeMo's; clip with model.max_grad_norm)",
        )


def _no_half_precision_throughout(settings) -> None:
    # Measured: NeMo 3.0.0's EasyMagpieTTS decoding (streaming_step) feeds float32 inputs to the backbone that
    # bf16-true / 16-true cast ("expected m1 and m2 to have the same dtype"), after every model is built.
    precision = settings.trainer.precision
    if precision in ("bf16-true", "16-true"):
        raise ConfigError(
            "trainer.precision",
            precision,
            "32-true, 16-mixed or bf16-mixed (NeMo's EasyMagpieTTS decoding passes float32 inputs to a backbone "
            f"that {precision} casts)",
        )


EASY_ONLINE_PO = Stage(
    name="easy_online_po",
    summary="GRPO of EasyMagpieTTS (decoder-only, a Hugging Face backbone)",
    loop=Loop.FIT,
    parse_algorithm=lambda model: GRPOSettings.parse(model, EASY_FAMILY),
    family=EASY_MAGPIETTS,
    nemo_class="EasyMagpieTTSModelOnlinePO",
    nemo_keys=EASY_GRPO_KEYS,
    our_keys=frozenset({"rollout_audio_files", "disable_dropout"}),
    refused_keys={
        "reward_asr_model_name": "this recipe reads it as model.nemo_asr.pretrained",
        "speaker_verification_model_name": "this recipe reads it as model.speaker_verification.pretrained",
        **{
            key: UNSUPPORTED
            for key in ("num_iterations", "epsilon", "epsilon_high", "skip_zero_std_groups", "replay_random_draws")
        },
    },
    deliberate_defaults={
        "reward_asr_model": (
            "whisper (NeMo: nemo). As for MagpieTTS: the CER reward for every language, in `whisper.dtype`"
        ),
        "grpo_beta": (
            "0.01 (NeMo's EasyMagpieTTS GRPO: 0.0, which loads the reference policy and then gives its KL no weight). "
            "The same KL weight as this project's MagpieTTS GRPO; reference_free: true drops the reference instead"
        ),
    },
    model_class="nemo_ext.models.easy_online_po:EasyMagpieTTSOnlinePO",
    dataset=MAGPIETTS_DATASET,
    dataset_node="dataset",
    data_keys=("train_manifest", "val_manifest"),
    required_paths=TRAINING_PATHS,
    manifests=TRAINING_MANIFESTS,
    reference_policy=True,
    reward_terms=True,
    cross_checks=(_no_lightning_clipping, _no_half_precision_throughout),
)
