"""Phases of NeMo's GRPO reward step that run inside its `generate_and_reward` body, measured without copying it.

That body writes each generated clip (`sf.write`) and its codes (`torch.save`), then embeds the clips with the
speaker model (`get_speaker_embeddings_from_filepaths`). NeMo's module calls these through its own global names,
so, for the duration of one call, those names point at timed stand-ins (`upstream_names.names_replaced`, as for
the Whisper helper). Nothing changes at import, and the names are restored on the way out."""

from __future__ import annotations

import contextlib

from nemo_ext.telemetry import phases
from nemo_ext.telemetry.anatomy import StepAnatomy
from nemo_ext.upstream_names import ModuleWith, names_replaced


@contextlib.contextmanager
def upstream_reward_phases_timed(anatomy: StepAnatomy, audio_files: bool = True):
    """While active, NeMo's PO module charges clip and code writes to `audio_io` (when `audio_files`: in memory,
    `rollout_audio.rollouts_in_memory` does it) and speaker embeddings to `speaker_verification`. With telemetry
    off, nothing is swapped."""
    if not anatomy.enabled:
        yield
        return
    from nemo.collections.tts.models import magpietts_preference_optimization as po

    timed = {
        "get_speaker_embeddings_from_filepaths": anatomy.wrap(
            phases.SPEAKER_VERIFICATION, po.get_speaker_embeddings_from_filepaths
        )
    }
    if audio_files:
        timed["sf"] = ModuleWith(po.sf, write=anatomy.wrap(phases.AUDIO_IO, po.sf.write))
        timed["torch"] = ModuleWith(po.torch, save=anatomy.wrap(phases.AUDIO_IO, po.torch.save))
    with names_replaced(po, **timed):
        yield
