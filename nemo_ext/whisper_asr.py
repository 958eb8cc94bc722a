"""Loading the Whisper reward / CER model in the configured dtype, and transcribing with it.

NeMo 3.0.0's `transcribe_with_whisper_from_filepaths` is broken under transformers 5.x (it pads features only
to the longest clip and passes `forced_decoder_ids`). `transcribe_with_whisper` below is the working form:
features padded to Whisper's 30 s window, and `generate(language=..., task="transcribe")`."""

from __future__ import annotations

import contextlib
import functools
from collections import defaultdict
from collections.abc import Sequence

import librosa
import torch

from nemo_ext.settings.whisper import WhisperSettings
from nemo_ext.telemetry import phases
from nemo_ext.upstream_names import names_replaced
from nemo_ext.whisper_dtype import from_pretrained_dtype_arg

WHISPER_SAMPLE_RATE = 16000


def load_whisper(settings: WhisperSettings):
    """Return (processor, model): the model frozen (`requires_grad=False`), in eval mode, in `settings.dtype`."""
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    processor = WhisperProcessor.from_pretrained(settings.pretrained)
    model = WhisperForConditionalGeneration.from_pretrained(
        settings.pretrained,
        dtype=from_pretrained_dtype_arg(settings.dtype),
        attn_implementation=settings.attn_implementation,
    )
    model.eval()
    # A reward model is never trained: frozen parameters stay out of the optimizer and out of DDP's buckets.
    model.requires_grad_(False)
    return processor, model


def transcribe_with_whisper(
    audio_filepaths: Sequence[str],
    language: str | Sequence[str | None] | None,
    whisper_processor,
    whisper_model,
    device: torch.device | str,
    normalizer=None,
    batch_size: int | None = None,
    anatomy=None,
    open_audio=None,
) -> list[str]:
    """Transcribe files in batches of `batch_size` (all at once when None), grouped by language.

    Same signature as NeMo's helper so it can stand in for it. `anatomy` (a StepAnatomy): the whole call is phase
    `asr`, reading the files `audio_io`. `open_audio(path)`: what librosa reads for a path (a clip kept in memory,
    see rollout_audio.py); the path itself by default."""

    def load(path, sr):
        return librosa.load(open_audio(path) if open_audio is not None else path, sr=sr)

    if anatomy is not None:
        load = anatomy.wrap(phases.AUDIO_IO, load)
    with anatomy.phase(phases.ASR) if anatomy is not None else contextlib.nullcontext():
        return _transcribe(
            audio_filepaths, language, whisper_processor, whisper_model, device, normalizer, batch_size, load
        )


def _transcribe(audio_filepaths, language, whisper_processor, whisper_model, device, normalizer, batch_size, load):
    if len(audio_filepaths) == 0:
        return []
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    languages = [language] * len(audio_filepaths) if language is None or isinstance(language, str) else list(language)
    if len(languages) != len(audio_filepaths):
        raise ValueError(f"{len(languages)} languages for {len(audio_filepaths)} files")
    # English-only checkpoints (*.en) refuse a language/task argument.
    multilingual = getattr(whisper_model.generation_config, "is_multilingual", True)

    indices_by_language: dict[str | None, list[int]] = defaultdict(list)
    for index, lang in enumerate(languages):
        indices_by_language[lang].append(index)

    transcripts = [""] * len(audio_filepaths)
    for lang, indices in indices_by_language.items():
        step = batch_size or len(indices)
        generate_kwargs = {"language": lang, "task": "transcribe"} if (lang and multilingual) else {}
        for start in range(0, len(indices), step):
            chunk = indices[start : start + step]
            speech = [load(audio_filepaths[i], sr=WHISPER_SAMPLE_RATE)[0] for i in chunk]
            # The log-mel features are computed on the model's device (transformers' torch STFT): on a GPU this
            # takes the CPU-side feature extraction (314 ms for 8 clips on the CPU here) off the reward step.
            with features_in_float32(device):
                features = whisper_processor(
                    speech, sampling_rate=WHISPER_SAMPLE_RATE, return_tensors="pt", device=str(torch.device(device))
                ).input_features
            features = features.to(device=device, dtype=whisper_model.dtype)
            # Whisper runs in its own dtype (model.whisper.dtype), not in the policy's autocast dtype.
            with torch.no_grad(), torch.autocast(device_type=features.device.type, enabled=False):
                token_ids = whisper_model.generate(features, **generate_kwargs)
            texts = whisper_processor.batch_decode(token_ids, skip_special_tokens=True)
            for i, text in zip(chunk, texts):
                transcripts[i] = normalizer.normalize(text) if normalizer is not None else text
    return transcripts


@contextlib.contextmanager
def features_in_float32(device):
    """The log-mel STFT in float32 whatever the policy's precision: under Lightning's *-mixed precisions it ran in
    bf16 autocast (NumPy then refused the result: "Got unsupported ScalarType BFloat16"), under 64-true with a
    float64 default dtype against float32 audio ("expected scalar type Double but found Float")."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.autocast(device_type=torch.device(device).type, enabled=False):
            yield
    finally:
        torch.set_default_dtype(previous)


@contextlib.contextmanager
def upstream_uses_working_transcription(batch_size: int | None, anatomy=None, open_audio=None, module=None):
    """While active, NeMo's PO module (or `module`, another NeMo module that imported the helper) calls
    `transcribe_with_whisper` instead of its broken helper.

    The module imported the helper by name, so the name is swapped in that module only, and only for the
    duration of the call that needs it (no import-time patching)."""
    if module is None:
        from nemo.collections.tts.models import magpietts_preference_optimization as module

    working = functools.partial(transcribe_with_whisper, batch_size=batch_size, anatomy=anatomy, open_audio=open_audio)
    with names_replaced(module, transcribe_with_whisper_from_filepaths=working):
        yield
