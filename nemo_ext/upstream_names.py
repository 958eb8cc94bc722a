"""Pointing one of NeMo's module-level names at a stand-in for the duration of a call.

NeMo's PO module calls helpers (`transcribe_with_whisper_from_filepaths`, `sf.write`, `torch.save`,
`get_speaker_embeddings_from_filepaths`) through names it imported. Replacing a name in that module only, and
only while the call that needs it runs, changes NeMo's behaviour without copying its step body and without
patching anything at import."""

from __future__ import annotations

import contextlib


@contextlib.contextmanager
def names_replaced(module, **replacements):
    """While active, `module.<name>` is `replacements[name]`; the originals come back on the way out."""
    saved = {name: getattr(module, name) for name in replacements}
    for name, value in replacements.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


class ModuleWith:
    """A module with some functions replaced; every other attribute is the module's own."""

    def __init__(self, module, **replaced):
        self._module, self._replaced = module, replaced

    def __getattr__(self, name):
        return self._replaced[name] if name in self._replaced else getattr(self._module, name)
