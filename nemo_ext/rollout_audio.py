"""GRPO rollouts kept in memory: NeMo's reward step writes every generated clip to a wav file and reads it back
(Whisper through librosa, the speaker model through soundfile). With `model.rollout_audio_files: false` (the
default) each clip is encoded exactly as the wav file would be (soundfile, WAV, PCM_16) into memory instead, and
read from there: the same samples reach the reward models, and no file reaches the (often shared) filesystem.
The codes NeMo saves next to each clip are not kept (nothing reads them)."""

from __future__ import annotations

import contextlib
import io

import soundfile as sf

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


def _no_save(*args, **kwargs) -> None:
    return None


@contextlib.contextmanager
def rollouts_in_memory(clips: InMemoryClips, anatomy=None):
    """While active, NeMo's GRPO reward body writes clips into `clips` and saves no codes, and the speaker
    helper reads clips from there. (`whisper_asr.transcribe_with_whisper` reads through `clips.source` itself.)"""
    from nemo.collections.tts.models import magpietts_preference_optimization as po
    from nemo.collections.tts.parts.utils import helpers

    write, save = clips.write, _no_save
    if anatomy is not None:
        write, save = anatomy.wrap("audio_io", write), anatomy.wrap("audio_io", save)
    try:
        with (
            names_replaced(po, sf=ModuleWith(po.sf, write=write), torch=ModuleWith(po.torch, save=save)),
            names_replaced(helpers, sf=ModuleWith(helpers.sf, read=clips.read)),
        ):
            yield clips
    finally:
        clips.clips.clear()
