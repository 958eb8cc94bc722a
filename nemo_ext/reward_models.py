"""Loading the NeMo reward models (CTC/RNNT ASR for CER, TitaNet for speaker similarity) by hub name or from a
local `.nemo` file, so a cluster without hub access can run."""

from __future__ import annotations

from nemo_ext.settings.reward_models import NemoModelSettings


def load_nemo_asr_model(settings: NemoModelSettings):
    import nemo.collections.asr as nemo_asr

    if settings.is_local_file:
        model = nemo_asr.models.ASRModel.restore_from(settings.pretrained, map_location="cpu")
    else:  # the class upstream uses for this name
        model = nemo_asr.models.EncDecRNNTBPEModel.from_pretrained(model_name=settings.pretrained)
    model.freeze()
    return model


def load_speaker_verification_model(settings: NemoModelSettings):
    import nemo.collections.asr as nemo_asr

    cls = nemo_asr.models.EncDecSpeakerLabelModel
    if settings.is_local_file:
        model = cls.restore_from(settings.pretrained, map_location="cpu")
    else:
        model = cls.from_pretrained(model_name=settings.pretrained)
    model.freeze()
    return model
