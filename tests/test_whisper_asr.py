"""Loading the tiny Whisper (saved in fp16, like whisper-large-v3) in each dtype, and transcribing with it."""

import glob
import os

import pytest
import torch

from nemo_ext.settings.whisper import WhisperSettings
from nemo_ext.telemetry.memory import module_footprint
from nemo_ext.whisper_asr import load_whisper, transcribe_with_whisper


@pytest.mark.parametrize(
    ("dtype", "expected", "bytes_per_param"),
    [("auto", torch.float16, 2), ("fp16", torch.float16, 2), ("bf16", torch.bfloat16, 2), ("fp32", torch.float32, 4)],
)
def test_load_in_configured_dtype_frozen_with_sdpa(tiny, dtype, expected, bytes_per_param):
    _, model = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": dtype}))
    footprint = module_footprint(model)
    assert footprint.dtypes == (str(expected).removeprefix("torch."),)
    assert footprint.param_count == tiny.whisper_param_count
    assert footprint.param_bytes == tiny.whisper_param_count * bytes_per_param
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training
    assert model.config._attn_implementation == "sdpa"


@pytest.fixture(scope="module")
def whisper_fp32(tiny):
    return load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": "fp32"}))


def wavs(tiny):
    return sorted(glob.glob(os.path.join(tiny.audio_dir, "*.wav")))


@pytest.fixture(scope="module")
def input_sensitive_whisper(tiny):
    """The tiny Whisper made to transcribe each clip and language differently: its random weights scaled up (so
    the audio and the language token move the argmax) and end-of-text suppressed (it predicted end-of-text first,
    so every clip came out as '' and order or language mix-ups went unseen)."""
    processor, model = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": "fp32"}))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(8.0)
    end_of_text = model.generation_config.eos_token_id
    model.generation_config.suppress_tokens = [end_of_text]
    model.generation_config.begin_suppress_tokens = [end_of_text]
    return processor, model


def test_batched_transcription_matches_one_by_one(tiny, input_sensitive_whisper):
    processor, model = input_sensitive_whisper
    one_by_one = [transcribe_with_whisper([path], "de", processor, model, "cpu")[0] for path in wavs(tiny)]
    assert len(set(one_by_one)) == 4, "the clips must transcribe differently, or order is untested"
    assert transcribe_with_whisper(wavs(tiny), "de", processor, model, "cpu") == one_by_one
    assert transcribe_with_whisper(wavs(tiny), "de", processor, model, "cpu", batch_size=3) == one_by_one


def test_per_file_languages_keep_input_order(tiny, input_sensitive_whisper):
    processor, model = input_sensitive_whisper
    files, languages = wavs(tiny), ["de", "fr", "it", "fr"]
    alone = [transcribe_with_whisper([f], lang, processor, model, "cpu")[0] for f, lang in zip(files, languages)]
    for path, lang, transcript in zip(files, languages, alone):
        assert transcript != transcribe_with_whisper([path], "en", processor, model, "cpu")[0], lang
    assert transcribe_with_whisper(files, languages, processor, model, "cpu", batch_size=2) == alone
    assert transcribe_with_whisper(files, languages, processor, model, "cpu") == alone


def test_english_only_checkpoint_gets_no_language_argument(tiny):
    processor, model = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": "fp32"}))
    model.generation_config.is_multilingual = False
    assert len(transcribe_with_whisper(wavs(tiny)[:1], "en", processor, model, "cpu")) == 1


def test_upstream_helper_is_still_broken_under_pinned_transformers(tiny, whisper_fp32):
    """Canary for NeMo's broken helper (transcribe_with_whisper_from_filepaths under transformers 5, docs/parity.md):
    when upstream fixes it, our replacement can go."""
    from nemo.collections.tts.parts.utils.helpers import transcribe_with_whisper_from_filepaths

    processor, model = whisper_fp32
    with pytest.raises(Exception, match="3000|forced_decoder_ids"):
        transcribe_with_whisper_from_filepaths(wavs(tiny)[:2], "de", processor, model, "cpu")


def test_empty_input_and_bad_batch_size(whisper_fp32):
    processor, model = whisper_fp32
    assert transcribe_with_whisper([], "de", processor, model, "cpu") == []
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        transcribe_with_whisper(["a.wav"], "de", processor, model, "cpu", batch_size=0)
