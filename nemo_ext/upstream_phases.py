"""Phases of NeMo's GRPO reward step that run inside its `generate_and_reward` body, measured without copying it.

That body writes each generated clip (`sf.write`) and its codes (`torch.save`), then embeds the clips with the
speaker model (`get_speaker_embeddings_from_filepaths`). NeMo's module calls these through its own global names,
so, for the duration of one call, those names point at timed stand-ins (as `upstream_uses_working_transcription`
does for the Whisper helper). Nothing changes at import, and the names are restored on the way out."""

from __future__ import annotations

import contextlib

from nemo_ext.step_anatomy import StepAnatomy


class _Timed:
    """A module whose listed functions run as a phase; every other attribute is the module's own."""

    def __init__(self, module, anatomy: StepAnatomy, phase: str, names: tuple[str, ...]):
        self._module = module
        self._timed = {name: anatomy.wrap(phase, getattr(module, name)) for name in names}

    def __getattr__(self, name):
        return self._timed.get(name) or getattr(self._module, name)


@contextlib.contextmanager
def upstream_reward_phases_timed(anatomy: StepAnatomy, audio_files: bool = True):
    """While active, NeMo's PO module charges clip and code writes to `audio_io` (when `audio_files`: in memory,
    `rollout_audio.rollouts_in_memory` does it) and speaker embeddings to `speaker_verification`. With telemetry
    off, nothing is swapped."""
    if not anatomy.enabled:
        yield
        return
    from nemo.collections.tts.models import magpietts_preference_optimization as po

    saved = {name: getattr(po, name) for name in ("sf", "torch", "get_speaker_embeddings_from_filepaths")}
    if audio_files:
        po.sf = _Timed(saved["sf"], anatomy, "audio_io", ("write",))
        po.torch = _Timed(saved["torch"], anatomy, "audio_io", ("save",))
    po.get_speaker_embeddings_from_filepaths = anatomy.wrap(
        "speaker_verification", saved["get_speaker_embeddings_from_filepaths"]
    )
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(po, name, value)
