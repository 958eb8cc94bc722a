"""The Whisper reward on CTranslate2 (`model.whisper.backend: ctranslate2`): the engine under faster-whisper.

It reads a CTranslate2 Whisper directory (model.bin, config.json, tokenizer.json): the CT2 models published as is,
or a Hugging Face checkpoint converted once with

    ct2-transformers-converter --model openai/whisper-large-v3 --output_dir whisper-large-v3-ct2 \\
        --copy_files tokenizer.json preprocessor_config.json generation_config.json

(the command comes with the `ctranslate2` package). `CT2WhisperProcessor` and `CT2WhisperModel` stand in for
transformers' processor and model in `whisper_asr.transcribe_with_whisper`: the same log-mel features, the same
greedy decoding from the same prompt (start of transcript, language and task on a multilingual model, no
timestamps).

CTranslate2 allocates outside torch: neither torch.cuda's counters nor the module's parameters see it, so the
model measures what its load added (the device's used memory on a GPU; on a CPU the process's RSS: the weights and
what reading the file left allocated) and the telemetry logs that figure as whisper/weights_bytes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from nemo_ext.settings.whisper import check_ct2_directory
from nemo_ext.telemetry.memory import ModuleFootprint, process_rss_bytes


def compute_type_for(dtype: str, device: str) -> str:
    """The CTranslate2 compute type for a canonical `model.whisper.dtype` on `device` ("cpu", "cuda", "cuda:1"):
    "auto" keeps the type the model was saved in ("default"); int8 keeps float16 activations on a GPU (int8
    weights: half of fp16's weight memory); the float types keep their names."""
    if dtype == "auto":
        return "default"
    if dtype == "int8" and device.startswith("cuda"):
        return "int8_float16"
    return dtype


class CT2WhisperProcessor:
    """transformers' WhisperProcessor, as far as transcription uses it: features, and decoding token ids."""

    def __init__(self, path: str, n_mels: int):
        import tokenizers
        from transformers import WhisperFeatureExtractor

        if os.path.isfile(os.path.join(path, "preprocessor_config.json")):
            self.feature_extractor = WhisperFeatureExtractor.from_pretrained(path)
        else:  # the CT2 models published as is carry no preprocessor config: Whisper's defaults, the model's mels
            self.feature_extractor = WhisperFeatureExtractor(feature_size=n_mels)
        self.tokenizer = tokenizers.Tokenizer.from_file(os.path.join(path, "tokenizer.json"))

    def __call__(self, speech, **kwargs):
        return self.feature_extractor(speech, **kwargs)

    def batch_decode(self, token_ids, skip_special_tokens: bool = True) -> list[str]:
        return self.tokenizer.decode_batch([list(ids) for ids in token_ids], skip_special_tokens=skip_special_tokens)


@dataclass(frozen=True)
class _GenerationConfig:
    is_multilingual: bool


class CT2WhisperModel:
    """A CTranslate2 Whisper with the part of `WhisperForConditionalGeneration` that transcription uses:
    `generate(features, language=, task=)` returning token ids, `dtype` (the features' dtype), and
    `generation_config.is_multilingual`."""

    dtype = torch.float32  # CTranslate2 takes float32 features whatever its compute type

    def __init__(self, path: str, compute_type: str, device: str):
        import ctranslate2

        kind, _, index = device.partition(":")
        index = int(index or 0)
        before = _used_memory(kind, index)
        self.model = ctranslate2.models.Whisper(path, device=kind, device_index=index, compute_type=compute_type)
        self.loaded_bytes = max(0, _used_memory(kind, index) - before)
        self.path, self.device, self.compute_type = path, device, compute_type
        self.max_length = generation_max_length(path)
        self.generation_config = _GenerationConfig(is_multilingual=self.model.is_multilingual)

    @property
    def n_mels(self) -> int:
        return self.model.n_mels

    def footprint(self) -> ModuleFootprint:
        """What the model took at load, as measured (CTranslate2 does not list its weights to Python)."""
        return ModuleFootprint(
            param_bytes=self.loaded_bytes,
            buffer_bytes=0,
            param_count=None,
            dtypes=(f"ct2:{self.model.compute_type}",),
            device=self.device,
        )

    def generate(self, features: torch.Tensor, language: str | None = None, task: str | None = None) -> list:
        import ctranslate2

        prompt = ["<|startoftranscript|>"]
        if self.model.is_multilingual:
            prompt += [f"<|{language or 'en'}|>", f"<|{task or 'transcribe'}|>"]
        prompt.append("<|notimestamps|>")

        array = np.ascontiguousarray(features.detach().to(device="cpu", dtype=torch.float32).numpy())
        results = self.model.generate(
            ctranslate2.StorageView.from_array(array),
            [prompt] * array.shape[0],
            beam_size=1,
            max_length=self.max_length,
        )
        return [result.sequences_ids[0] for result in results]


def generation_max_length(path: str) -> int:
    """Tokens per transcript: the checkpoint's generation_config.json `max_length` when the directory has one
    (ct2-transformers-converter --copy_files ... generation_config.json), else OpenAI Whisper's 448 (every
    published size)."""
    config = os.path.join(path, "generation_config.json")
    if os.path.isfile(config):
        with open(config) as f:
            return int(json.load(f).get("max_length") or 448)
    return 448


def load_ct2_whisper(path: str, dtype: str, device: str) -> tuple[CT2WhisperProcessor, CT2WhisperModel]:
    check_ct2_directory(path)
    model = CT2WhisperModel(path, compute_type_for(dtype, device), device)
    return CT2WhisperProcessor(path, model.n_mels), model


def _used_memory(kind: str, index: int) -> int:
    if kind == "cuda":
        free, total = torch.cuda.mem_get_info(index)
        return total - free
    return process_rss_bytes()
