"""Offline PO, step 1 of 3: generate and score every line of a manifest (`trainer.test` of
MagpieTTSOfflinePODataGen), resumable item by item."""

from nemo_ext.settings.model_keys import DATAGEN_KEYS, MAGPIETTS
from nemo_ext.settings.offline_po import DataGenSettings
from nemo_ext.settings.rollout_decoder import rollout_decoder_fits
from nemo_ext.stages.stage import MAGPIETTS_DATASET, Loop, Stage

OFFLINE_PO_DATAGEN = Stage(
    name="offline_po_datagen",
    summary="offline PO, step 1: generate and score each line (CER, speaker similarity)",
    loop=Loop.GENERATE,
    parse_algorithm=lambda model: DataGenSettings.parse(model),
    family=MAGPIETTS,
    nemo_class="MagpieTTSModelOfflinePODataGen",
    nemo_keys=DATAGEN_KEYS,
    our_keys=frozenset({"datagen_seed", "rollout_decoder"}),
    deliberate_defaults={
        "use_kv_cache_for_inference": (
            "true (NeMo: false). DataGen only generates: the KV cache decodes each step incrementally instead of "
            "re-running the whole prefix"
        ),
        "load_whisper_model": (
            "null (NeMo: false): Whisper is loaded exactly when the language is scored with it (not English); "
            "false with a non-English language is refused"
        ),
    },
    model_class="nemo_ext.models.offline_po_datagen:MagpieTTSOfflinePODataGen",
    runner="nemo_ext.recipes.offline_po_datagen:generate",
    dataset=MAGPIETTS_DATASET,
    data_keys=("test_manifest",),
    required_paths=("init_from_ptl_ckpt", "codecmodel_path", "data.test_manifest"),
    manifests=("data.test_manifest",),
    cross_checks=(rollout_decoder_fits,),
)
