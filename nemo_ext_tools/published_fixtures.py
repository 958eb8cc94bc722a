"""Builds, offline, the published-size fixtures the GRPO step benchmark runs on (never the tests: a step at this size
takes minutes on a CPU).

- MagpieTTS with the architecture of NeMo's published `magpietts.yaml` (NVIDIA-NeMo/Speech,
  examples/tts/conf/magpietts/magpietts.yaml): encoder 6 x 768, context encoder 1 x 768, decoder 12 x 768 with
  cross-attention (d_ffn 3072, 12 heads), local transformer of hidden size 256, 5 s of context audio; random
  weights. The text tokenizers are the tiny fixtures' character tokenizers (the published IPA / byt5 ones need the
  hub); they change the text length a little, not the model's cost.
- A HiFiGAN codec at the published frame rate (22.05 kHz, 1024 samples per frame: 21.5 frames per second) and
  codebook count (8 codebooks of FSQ [8, 7, 6, 6], 2016 codes each). Its widths are ours (the published codec's
  are not in the MagpieTTS config): HiFiGAN V1's decoder (512 channels, resblock kernels 3/7/11, 13.8 M
  parameters) and an encoder of 31 M parameters.
- Whisper: the real multilingual base (bash scripts/fetch_pretrained_whisper.sh base), in Hugging Face format
  and as the CTranslate2 original.
- Speech: espeak-ng sentences, English and Italian, as targets and as the 5 s contexts, with their codes cached
  (`target_audio_codes_path`, `context_audio_codes_path`, as NeMo's MagpieTTS recipes prepare manifests, read
  with `load_cached_codes_if_available: true`): otherwise the codec's encoder runs on every forward of the step
  and measures the codec, not the levers.
- The speaker model and the NeMo ASR model are the tiny fixtures' (their cost is small beside the rest; the
  benchmark says so).

    python scripts/make_tiny_fixtures.py --size published [--out .published]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass

import soundfile as sf
import torch
from omegaconf import OmegaConf

from nemo_ext_tools.tiny_fixtures import (
    SAMPLE_RATE,
    _tiny_codec,
    build_tiny_fixtures,
    record_fixtures,
    stored_fixtures,
    tiny_magpie_architecture,
)

FIXTURES_VERSION = 2  # 2: cached codes in the manifest
MARKER = "published_fixtures.json"
PUBLISHED_FSQ_LEVELS = [8, 7, 6, 6]
PUBLISHED_CODEBOOKS = 8
CONTEXT_SECONDS = 5.0
SENTENCES = {
    "en": [
        "The committee will publish its final report on the new railway line early next spring.",
        "Please remember to water the plants on the balcony while we are away for the weekend.",
        "Scientists measured the temperature of the lake every morning for three consecutive years.",
        "She opened the window, looked at the quiet street, and decided to walk to the station.",
    ],
    "it": [
        "Il comitato pubblicherà la relazione finale sulla nuova linea ferroviaria la prossima primavera.",
        "Ricordati di annaffiare le piante sul balcone mentre siamo via per il fine settimana.",
        "Gli scienziati hanno misurato la temperatura del lago ogni mattina per tre anni consecutivi.",
        "Ha aperto la finestra, ha guardato la strada tranquilla e ha deciso di andare a piedi.",
    ],
}


@dataclass(frozen=True)
class PublishedFixtures:
    root: str
    manifest: str
    codec: str
    reference_checkpoint: str
    whisper: str  # Hugging Face directory
    whisper_ct2: str  # the CTranslate2 original
    speaker_verification: str
    nemo_asr: str
    policy_param_count: int


def published_magpie_architecture(codec_path: str) -> dict:
    """The tiny architecture's `model` config with every size of NeMo's published magpietts.yaml."""
    architecture = tiny_magpie_architecture(codec_path)

    def block(n_layers, kernel_size, is_causal=True, **extra):
        return {
            "n_layers": n_layers,
            "d_model": 768,
            "d_ffn": 3072,
            "sa_n_heads": 12,
            "kernel_size": kernel_size,
            "p_dropout": 0.1,
            "p_dropout_out": 0.0,
            "has_xattn": False,
            "is_causal": is_causal,
            "apply_norm_out": True,
            "max_length_causal_mask": 2048,
            "use_learnable_pos_emb": True,
            **extra,
        }

    architecture.update(
        {
            "embedding_dim": 768,
            "context_duration_min": CONTEXT_SECONDS,
            "context_duration_max": CONTEXT_SECONDS,
            "cfg_unconditional_prob": 0.1,
            "local_transformer_n_layers": 1,
            "local_transformer_n_heads": 1,
            "local_transformer_hidden_dim": 256,
            "encoder": block(6, 3),
            "context_encoder": block(1, 3, is_causal=False),
            "decoder": block(
                12,
                1,
                has_xattn=True,
                xa_d_head=128,
                xa_d_memory=768,
                xa_n_heads=1,
                apply_norm_to_cond=True,
                make_prior_window_strict=True,
            ),
        }
    )
    return architecture


def build_published_fixtures(root: str, tiny_root: str, whisper: str, force: bool = False) -> PublishedFixtures:
    """Build under `root` (reused when built with this version). `whisper`: the Hugging Face directory of the real
    Whisper base; its CTranslate2 original is `<whisper>-ct2` (both from fetch_pretrained_whisper.sh)."""
    root = os.path.abspath(root)
    marker = os.path.join(root, MARKER)
    stored = None if force else stored_fixtures(marker, FIXTURES_VERSION, PublishedFixtures)
    if stored is not None:
        return stored
    whisper = os.path.abspath(whisper)
    for needed in (os.path.join(whisper, "model.safetensors"), os.path.join(f"{whisper}-ct2", "model.bin")):
        if not os.path.isfile(needed):
            raise FileNotFoundError(f"{needed} is missing: run bash scripts/fetch_pretrained_whisper.sh base first")
    if not shutil.which("espeak-ng"):
        raise FileNotFoundError("espeak-ng is missing: bash scripts/install_test_tools.sh installs it")
    tiny = build_tiny_fixtures(tiny_root)
    os.makedirs(root, exist_ok=True)
    torch.manual_seed(0)
    codec = os.path.join(root, "codec.nemo")
    codec_model = _tiny_codec(
        PUBLISHED_FSQ_LEVELS,
        num_codebooks=PUBLISHED_CODEBOOKS,
        encoder_channels=24,
        decoder_channels=512,
        resblocks=([3, 7, 11], [1, 3, 5]),
    )
    codec_model.save_to(codec)
    manifest = _write_speech_and_manifest(root, codec_model)
    reference = os.path.join(root, "magpie_reference.ckpt")
    count = _save_reference_checkpoint(codec, reference)
    fixtures = PublishedFixtures(
        root=root,
        manifest=manifest,
        codec=codec,
        reference_checkpoint=reference,
        whisper=whisper,
        whisper_ct2=f"{whisper}-ct2",
        speaker_verification=tiny.speaker_verification,
        nemo_asr=tiny.nemo_asr,
        policy_param_count=count,
    )
    record_fixtures(marker, FIXTURES_VERSION, fixtures)
    return fixtures


def _speak(text: str, language: str, path: str) -> float:
    """espeak-ng's speech for `text`, at the codec's rate; returns the duration in seconds."""
    import librosa

    raw = f"{path}.espeak.wav"
    subprocess.run(["espeak-ng", "-v", language, "-w", raw, text], check=True)
    samples, rate = sf.read(raw, dtype="float32")
    os.remove(raw)
    samples = librosa.resample(samples, orig_sr=rate, target_sr=SAMPLE_RATE)
    sf.write(path, samples, SAMPLE_RATE)
    return len(samples) / SAMPLE_RATE


def _cache_codes(codec_model, wav: str) -> str:
    """The codec's codes of a wav, (codebooks, frames), saved beside it."""
    samples, _ = sf.read(wav, dtype="float32")
    codec_model.eval()
    with torch.no_grad():
        codes, lengths = codec_model.encode(
            audio=torch.from_numpy(samples)[None], audio_len=torch.tensor([len(samples)])
        )
    path = f"{os.path.splitext(wav)[0]}.codes.pt"
    torch.save(codes[0, :, : int(lengths[0])].clone(), path)
    return path


def _write_speech_and_manifest(root: str, codec_model) -> str:
    audio_dir = os.path.join(root, "wavs")
    os.makedirs(audio_dir, exist_ok=True)
    rows = []
    for language, sentences in SENTENCES.items():
        paths = [os.path.join(audio_dir, f"{language}{i}.wav") for i in range(len(sentences))]
        durations = [_speak(text, language, path) for text, path in zip(sentences, paths)]
        codes = [_cache_codes(codec_model, path) for path in paths]
        for i, (text, path, duration) in enumerate(zip(sentences, paths, durations)):
            context = (i + 1) % len(sentences)  # another sentence of the same voice: at least 5 s of speech
            rows.append(
                {
                    "audio_filepath": path,
                    "text": text,
                    "duration": round(duration, 3),
                    "speaker": f"espeak-{language}",
                    "context_audio_filepath": paths[context],
                    "context_audio_duration": round(durations[context], 3),
                    "target_audio_codes_path": codes[i],
                    "context_audio_codes_path": codes[context],
                    "language": language,
                }
            )
    manifest = os.path.join(root, "manifest.json")
    with open(manifest, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return manifest


def _save_reference_checkpoint(codec: str, path: str) -> int:
    from nemo.collections.tts.models import MagpieTTSModel

    architecture = published_magpie_architecture(codec)
    torch.manual_seed(0)
    model = MagpieTTSModel(cfg=OmegaConf.create(architecture))
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": {"cfg": OmegaConf.create(architecture)}}, path)
    excluded = tuple(model._get_state_dict_keys_to_exclude())
    return int(sum(p.numel() for name, p in model.named_parameters() if not name.startswith(excluded)))
