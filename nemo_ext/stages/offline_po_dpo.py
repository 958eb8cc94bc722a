"""Offline PO, step 3 of 3: DPO / IPO / RPO on chosen-rejected pairs (`trainer.fit` of MagpieTTSOfflinePO)."""

from nemo_ext.settings.model_keys import DPO_KEYS, MAGPIETTS
from nemo_ext.settings.offline_po import DPOSettings
from nemo_ext.stages.stage import TRAINING_MANIFESTS, TRAINING_PATHS, Loop, Stage

OFFLINE_PO_DPO = Stage(
    name="offline_po_dpo",
    summary="offline PO, step 3: DPO / IPO / RPO on chosen-rejected pairs",
    loop=Loop.FIT,
    parse_algorithm=lambda model: DPOSettings.parse(model),
    family=MAGPIETTS,
    nemo_class="MagpieTTSModelOfflinePO",
    nemo_keys=DPO_KEYS,
    our_keys=frozenset({"disable_dropout", "reference_policy_mode"}),
    model_class="nemo_ext.models.offline_po:MagpieTTSOfflinePO",
    dataset="nemo.collections.tts.data.text_to_speech_dataset.MagpieTTSDatasetDPO",
    data_keys=("train_manifest", "val_manifest"),
    required_paths=TRAINING_PATHS,
    manifests=TRAINING_MANIFESTS,
    preference_pairs=True,
    absolute_audio_paths=False,  # NeMo's DPO dataset joins relative paths with data.audio_dir
    reference_policy=True,
    # This stage loads no reward model; the blocks are accepted (one set of launcher overrides serves every stage)
    # and checked, then dropped before NeMo builds the model.
    unused_model_keys=("whisper", "nemo_asr", "speaker_verification"),
    telemetry=False,
)
