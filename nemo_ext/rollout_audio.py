"""GRPO rollouts kept in memory: NeMo's reward step writes every generated clip to a wav file and reads it back
(Whisper through librosa, the speaker model through soundfile). With `model.rollout_audio_files: false` (the
default) each clip is encoded exactly as the wav file would be (soundfile, WAV, PCM_16) into memory instead, and
read from there: the same samples reach the reward models, and no file reaches the (often shared) filesystem.
The codes NeMo's MagpieTTS GRPO saves next to each clip are not kept (nothing reads them). EasyMagpieTTS GRPO
writes its rollout and context clips through the same `sf.write` in its own module.

NeMo ASR reads files through its own dataloader. Given arrays instead, NeMo pads every clip shorter than a second
to one second (`pad_min_duration`, a different transcript for a short rollout), so the clips are handed over
decoded exactly as its file loader decodes them (float32 PCM, librosa's default resampling, as
`AudioSegment.from_file`) with that padding off, in the calling process (no dataloader workers forked per call)."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import soundfile as sf
import torch

from nemo_ext.telemetry import phases
from nemo_ext.upstream_names import ModuleWith, names_replaced


class InMemoryClips:
    """path -> the bytes NeMo's `sf.write(path, audio, rate)` would have put in that file."""

    def __init__(self):
        self.clips: dict[str, bytes] = {}

    def write(self, path, data, samplerate, *args, **kwargs) -> None:
        buffer = io.BytesIO()
        kwargs.setdefault("format", "WAV")  # sf.write infers it from a .wav path
        sf.write(buffer, data, samplerate, *args, **kwargs)
        self.clips[str(path)] = buffer.getvalue()

    def source(self, path):
        """What to read for `path`: its clip when kept here, else the path (context audio lives in files)."""
        clip = self.clips.get(str(path))
        return io.BytesIO(clip) if clip is not None else path

    def read(self, path, *args, **kwargs):
        return sf.read(self.source(path), *args, **kwargs)

    def holds_all(self, audio) -> bool:
        return isinstance(audio, (list, tuple)) and bool(audio) and all(str(a) in self.clips for a in audio)

    def decoded_as_nemo_asr_reads_files(self, paths, sample_rate: int) -> list[torch.Tensor]:
        """The samples NeMo ASR's file loader (`AudioSegment.from_file(path, target_sr=sample_rate)`) would give."""
        import librosa

        decoded = []
        for path in paths:
            samples, rate = sf.read(self.source(path), dtype="float32")
            if rate != sample_rate:
                samples = librosa.core.resample(samples, orig_sr=rate, target_sr=sample_rate)
            decoded.append(torch.from_numpy(samples))
        return decoded


def _clip_transcribe_config(override_config=None, **options):
    """NeMo's TranscribeConfig (the caller's `override_config`, if any, with `options` over it) with its array
    padding off and no dataloader workers."""
    from nemo.collections.asr.parts.mixins.transcription import TranscribeConfig

    @dataclasses.dataclass
    class ClipTranscribeConfig(TranscribeConfig):
        pad_min_duration: float = 0.0  # NeMo's file loader does not pad; its array loader pads to 1 s

    if override_config is not None:
        given = {f.name: getattr(override_config, f.name) for f in dataclasses.fields(override_config) if f.init}
        options = {**{k: v for k, v in given.items() if k != "_internal"}, **options}
    options["num_workers"] = 0
    return ClipTranscribeConfig(**options)


def nemo_asr_reading_clips(transcribe, clips: InMemoryClips, sample_rate: int, anatomy=None):
    """`transcribe` (a NeMo ASR model's) that takes paths of clips held in `clips` as if they were files."""

    def transcribe_clips(audio, batch_size: int = 4, **options):
        if not clips.holds_all(audio):
            return transcribe(audio, batch_size=batch_size, **options)
        with anatomy.phase(phases.AUDIO_IO) if anatomy is not None else contextlib.nullcontext():
            arrays = clips.decoded_as_nemo_asr_reads_files(audio, sample_rate)
        return transcribe(arrays, override_config=_clip_transcribe_config(batch_size=batch_size, **options))

    return transcribe_clips


def _no_save(*args, **kwargs) -> None:
    return None


@contextlib.contextmanager
def rollouts_in_memory(clips: InMemoryClips, anatomy=None, nemo_asr_model=None, module=None):
    """While active, NeMo's GRPO reward body (in `module`, MagpieTTS's PO module by default) writes clips into
    `clips` and saves no codes, and the speaker helper and `nemo_asr_model` (when given) read clips from there.
    (`whisper_asr.transcribe_with_whisper` reads through `clips.source` itself.)"""
    from nemo.collections.tts.parts.utils import helpers

    if module is None:
        from nemo.collections.tts.models import magpietts_preference_optimization as module

    write, save = clips.write, _no_save
    if anatomy is not None:
        write, save = anatomy.wrap(phases.AUDIO_IO, write), anatomy.wrap(phases.AUDIO_IO, save)
    asr = contextlib.nullcontext()
    if nemo_asr_model is not None:
        rate = nemo_asr_model.preprocessor._sample_rate
        asr = names_replaced(
            nemo_asr_model, transcribe=nemo_asr_reading_clips(nemo_asr_model.transcribe, clips, rate, anatomy)
        )
    try:
        with (
            asr,
            names_replaced(module, sf=ModuleWith(module.sf, write=write), torch=ModuleWith(module.torch, save=save)),
            names_replaced(helpers, sf=ModuleWith(helpers.sf, read=clips.read)),
        ):
            yield clips
    finally:
        clips.clips.clear()
