"""NeMo's MagpieTTS datasets, with the two additions the offline PO stages need."""

from __future__ import annotations

from nemo.collections.tts.data.text_to_speech_dataset import MagpieTTSDataset, MagpieTTSDatasetDPO

from nemo_ext.datagen_layout import ITEM_ID_KEY


def adopt(dataset, extension: type):
    """Give a dataset NeMo built the methods of `extension`, a subclass of the dataset's own class that adds
    methods and no state. NeMo builds datasets with `safe_instantiate`, which refuses `_target_` classes outside
    `nemo.*`; re-classing the instance keeps NeMo's own constructor call (and its many arguments) as it is."""
    base = extension.__mro__[1]
    if type(dataset) is not base:
        raise TypeError(f"{extension.__name__} extends {base.__name__}, not {type(dataset).__name__}")
    dataset.__class__ = extension
    return dataset


# Cached codec codes in a manifest entry (DataGen saves them as int16, as NeMo's DataGen does).
CODE_KEYS = ("audio_codes", "context_audio_codes")


class MagpieTTSDatasetWithItemIds(MagpieTTSDataset):
    """Adds `item_ids` (each item's input manifest line) to the batch, so DataGen can write into every metrics
    file which text and context the sample was generated for. The pair stage matches samples by it instead of
    by rank and index in file names, which depend on how the sampler split the manifest across ranks."""

    def __getitem__(self, index):
        example = super().__getitem__(index)
        example["item_id"] = self.data_samples[index].manifest_entry.get(ITEM_ID_KEY)
        return example

    def collate_fn(self, batch):
        collated = super().collate_fn(batch)
        collated["item_ids"] = [example["item_id"] for example in batch]
        return collated


class MagpieTTSDatasetDPOWideCodes(MagpieTTSDatasetDPO):
    """NeMo's DPO dataset, with cached codes widened to int64 as they are loaded.

    DataGen saves codes as int16 (half the disk), and NeMo's DPO step feeds them to `torch.gather`, which refuses
    int16 indices ("gather(): Expected dtype int32/int64 for index"). Widening on load keeps every DataGen
    output, old or new, usable."""

    def __getitem__(self, index):
        pair = super().__getitem__(index)
        for example in pair.values():
            for key in CODE_KEYS:
                if key in example:
                    example[key] = example[key].long()
        return pair
