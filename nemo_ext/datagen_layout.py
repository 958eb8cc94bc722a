"""Where DataGen writes, and how the pair stage reads it back: the one owner of that layout.

<run folder>/
  state/items.json                      DataGen's copy of the input manifest, each line with ITEM_ID_KEY (its index)
  audios/<stem>.wav, <stem>_codes.pt    each generated sample (int16 codes)
  audios/<stem>_metrics.json            its scores, written last and atomically: the sample is complete
"""

from __future__ import annotations

import os

AUDIO_DIR = "audios"
METRICS_SUFFIX = "_metrics.json"
CODES_SUFFIX = "_codes.pt"
ITEMS_MANIFEST = os.path.join("state", "items.json")
# The key DataGen adds to each line of its copy of the input manifest: the line's index. DataGen writes it into every
# metrics file as `item_id`.
ITEM_ID_KEY = "magpie_item_id"
# Upstream's transcript for items whose ASR failed; the pair selection skips groups holding one.
INVALID_TRANSCRIPT = "<INVALID>"


def sample_stem(audio_dir: str, rank: int, item_id) -> str:
    """The path of a sample's files without suffix (NeMo's naming, with the manifest line as the index)."""
    return os.path.join(audio_dir, f"predicted_audioRank{rank}_{item_id}")
