"""Online PO (GRPO) of EasyMagpieTTS (NeMo's decoder-only family): `trainer.fit` of EasyMagpieTTSOnlinePO."""

from nemo_ext.errors import ConfigError
from nemo_ext.grpo.losses import EASY_MAGPIETTS as EASY_FAMILY
from nemo_ext.settings.grpo import GRPOSettings
from nemo_ext.settings.model_keys import EASY_GRPO_KEYS, EASY_MAGPIETTS
from nemo_ext.stages.stage import MAGPIETTS_DATASET, TRAINING_MANIFESTS, TRAINING_PATHS, Loop, Stage


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


EASY_ONLINE_PO = Stage(
    name="easy_online_po",
    summary="GRPO of EasyMagpieTTS (decoder-only, a Hugging Face backbone)",
    loop=Loop.FIT,
    parse_algorithm=lambda model: GRPOSettings.parse(model, EASY_FAMILY),
    family=EASY_MAGPIETTS,
    nemo_class="EasyMagpieTTSModelOnlinePO",
    nemo_keys=EASY_GRPO_KEYS,
    our_keys=frozenset({"rollout_audio_files"}),
    replaced_keys={
        "reward_asr_model_name": "model.nemo_asr.pretrained",
        "speaker_verification_model_name": "model.speaker_verification.pretrained",
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
    cross_checks=(_no_lightning_clipping,),
)
