"""Builds, offline, the embedded tiny default: real NeMo / transformers classes with tiny dimensions.

Used by the README demo (a complete GRPO run on CPU) and by the tests. Nothing here reaches a model hub."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass

import numpy as np
import soundfile as sf
import torch
from omegaconf import OmegaConf

from nemo_ext.compat import backport_tar_extraction_filter
from nemo_ext.settings.run import TINY_FIXTURES_MARKER, TINY_FIXTURES_VERSION

FIXTURES_VERSION = TINY_FIXTURES_VERSION  # 5: a speaker model whose similarities spread (learning signal)
SAMPLE_RATE = 22050
SAMPLES_PER_FRAME = 1024
FSQ_LEVELS = [4, 4]
# EasyMagpieTTS samples its argmax codes with a fixed top-k of 80: a codebook needs at least that many entries.
EASY_FSQ_LEVELS = [8, 4, 4]
NUM_CODEBOOKS = 2
TEXTS = ["hello world.", "a tiny test.", "guten tag.", "short phrase here."]
CHARS_TOKENIZER = {
    "_target_": "nemo.collections.common.tokenizers.text_to_speech.tts_tokenizers.EnglishCharsTokenizer",
    "punct": True,
    "apostrophe": True,
    "pad_with_space": False,
}
LANGUAGE = "de"  # not "en": DataGen scores non-English with Whisper, the model this project is about


@dataclass(frozen=True)
class TinyFixtures:
    root: str
    audio_dir: str
    manifest: str
    dpo_manifest: str
    codec: str
    speaker_verification: str
    nemo_asr: str
    whisper: str
    reference_checkpoint: str
    whisper_param_count: int
    easy_codec: str
    easy_backbone: str  # a tiny local Hugging Face causal-LM config (EasyMagpieTTS's `transformer_hf_backend`)
    easy_reference_checkpoint: str


def stored_fixtures(marker: str, version: int, kind):
    """The fixtures `marker` records (a `kind` dataclass) when they were built by `version`; else None."""
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        stored = json.load(f)
    return kind(**stored) if stored.pop("version", None) == version else None


def record_fixtures(marker: str, version: int, fixtures) -> None:
    with open(marker, "w") as f:
        json.dump({"version": version, **asdict(fixtures)}, f, indent=1)


def build_tiny_fixtures(root: str, force: bool = False) -> TinyFixtures:
    """Build every fixture under `root` (reused when already built with this FIXTURES_VERSION)."""
    root = os.path.abspath(root)
    marker = os.path.join(root, TINY_FIXTURES_MARKER)
    stored = None if force else stored_fixtures(marker, FIXTURES_VERSION, TinyFixtures)
    if stored is not None:
        return stored
    os.makedirs(root, exist_ok=True)
    backport_tar_extraction_filter()  # the reference checkpoint restores the codec .nemo
    torch.manual_seed(0)
    audio_dir, manifest, dpo_manifest = _write_audio_and_manifests(root)
    codec = _save(_tiny_codec(), os.path.join(root, "codec.nemo"))
    fixtures = TinyFixtures(
        root=root,
        audio_dir=audio_dir,
        manifest=manifest,
        dpo_manifest=dpo_manifest,
        codec=codec,
        speaker_verification=_save(
            _calibrated_speaker_verification(codec, audio_dir), os.path.join(root, "speaker_verification.nemo")
        ),
        nemo_asr=_save(_tiny_ctc_asr(), os.path.join(root, "nemo_asr.nemo")),
        whisper=os.path.join(root, "whisper-tiny"),
        reference_checkpoint=os.path.join(root, "magpie_reference.ckpt"),
        whisper_param_count=_save_tiny_whisper(os.path.join(root, "whisper-tiny")),
        easy_codec=_save(_tiny_codec(EASY_FSQ_LEVELS), os.path.join(root, "easy_codec.nemo")),
        easy_backbone=_save_tiny_causal_lm_config(os.path.join(root, "easy-backbone")),
        easy_reference_checkpoint=os.path.join(root, "easy_magpie_reference.ckpt"),
    )
    _save_reference_checkpoint(fixtures)
    _save_easy_reference_checkpoint(fixtures)
    record_fixtures(marker, FIXTURES_VERSION, fixtures)
    return fixtures


def _save(model, path: str) -> str:
    model.save_to(path)
    return path


def _write_audio_and_manifests(root: str):
    audio_dir = os.path.join(root, "wavs")
    os.makedirs(audio_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    entries = []
    for i, text in enumerate(TEXTS):
        duration = 1.0 + 0.25 * i
        t = np.arange(int(duration * SAMPLE_RATE)) / SAMPLE_RATE
        tone = 0.3 * np.sin(2 * np.pi * (120 + 40 * i) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        path = os.path.join(audio_dir, f"utt{i}.wav")
        sf.write(path, (tone + 0.02 * rng.standard_normal(t.shape)).astype(np.float32), SAMPLE_RATE)
        context = (i + 1) % len(TEXTS)
        entries.append(
            {
                # Absolute: the PO code sf.read()s batch['audio_filepaths'] as they are.
                "audio_filepath": path,
                "text": text,
                "duration": round(duration, 3),
                "speaker": f"spk{i % 2}",
                "context_audio_filepath": os.path.join(audio_dir, f"utt{context}.wav"),
                "context_audio_duration": round(1.0 + 0.25 * context, 3),
                "language": LANGUAGE,
            }
        )
    manifest = os.path.join(root, "manifest.json")
    _write_jsonl(manifest, entries)
    # DPO: (chosen, rejected) pairs on consecutive lines.
    pairs = []
    for i in range(0, len(entries), 2):
        chosen = dict(entries[i], reward=1.0)
        rejected = dict(
            entries[i], audio_filepath=entries[i + 1]["audio_filepath"], duration=entries[i + 1]["duration"], reward=0.3
        )
        pairs += [chosen, rejected]
    dpo_manifest = os.path.join(root, "manifest_dpo.json")
    _write_jsonl(dpo_manifest, pairs)
    return audio_dir, manifest, dpo_manifest


def _write_jsonl(path, rows):
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def _tiny_codec(
    levels=FSQ_LEVELS,
    num_codebooks: int = NUM_CODEBOOKS,
    encoder_channels: int = 4,
    decoder_channels: int = 64,
    resblocks: tuple[list[int], list[int]] = ([3], [1]),
):
    """A HiFiGAN codec at 22.05 kHz and 1024 samples per frame (21.5 frames per second, MagpieTTS's); the
    published-size fixtures (published_fixtures.py) widen it and give it 8 codebooks."""
    from nemo.collections.tts.models import AudioCodecModel

    latent = num_codebooks * len(levels)
    kernels, dilations = resblocks
    cfg = {
        "sample_rate": SAMPLE_RATE,
        "samples_per_frame": SAMPLES_PER_FRAME,
        "mel_loss_l1_scale": 1.0,
        "mel_loss_l2_scale": 0.0,
        "stft_loss_scale": 0.0,
        "time_domain_loss_scale": 0.0,
        "commit_loss_scale": 0.0,
        "loss_resolutions": [[256, 64, 256], [512, 128, 512]],
        "mel_loss_dims": [20, 40],
        "feature_loss_type": "absolute",
        "audio_encoder": {
            "_target_": "nemo.collections.tts.modules.audio_codec_modules.HiFiGANEncoder",
            "down_sample_rates": [2, 2, 4, 8, 8],
            "encoded_dim": latent,
            "base_channels": encoder_channels,
            "activation": "lrelu",
            "resblock_kernel_sizes": kernels,
            "resblock_dilation_sizes": dilations,
        },
        "audio_decoder": {
            "_target_": "nemo.collections.tts.modules.audio_codec_modules.HiFiGANDecoder",
            "up_sample_rates": [8, 8, 4, 2, 2],
            "input_dim": latent,
            "base_channels": decoder_channels,
            "activation": "lrelu",
            "output_activation": "tanh",
            "resblock_kernel_sizes": kernels,
            "resblock_dilation_sizes": dilations,
        },
        "vector_quantizer": {
            "_target_": "nemo.collections.tts.modules.audio_codec_modules.GroupFiniteScalarQuantizer",
            "num_groups": num_codebooks,
            "num_levels_per_group": levels,
        },
        # No discriminator: the real one downloads microsoft/wavlm-base-plus.
        "generator_loss": {"_target_": "nemo.collections.tts.losses.audio_codec_loss.GeneratorSquaredLoss"},
        "discriminator_loss": {"_target_": "nemo.collections.tts.losses.audio_codec_loss.DiscriminatorSquaredLoss"},
        "optim": {"_target_": "torch.optim.Adam", "lr": 2e-4},
    }
    return AudioCodecModel(cfg=OmegaConf.create(cfg))


def _jasper_block(filters, kernel, residual):
    return {
        "filters": filters,
        "repeat": 1,
        "kernel": [kernel],
        "stride": [1],
        "dilation": [1],
        "dropout": 0.0,
        "residual": residual,
        "separable": True,
        "se": True,
        "se_context_size": -1,
    }


def _mel_preprocessor():
    return {
        "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
        "sample_rate": 16000,
        "features": 16,
        "n_fft": 512,
        "window_size": 0.025,
        "window_stride": 0.01,
        "window": "hann",
        "dither": 0.0,
        "normalize": "per_feature",
        "frame_splicing": 1,
    }


def _tiny_speaker_verification():
    """TitaNet-shaped (ConvASR encoder + attention-pooling speaker decoder)."""
    from nemo.collections.asr.models import EncDecSpeakerLabelModel

    cfg = {
        "sample_rate": 16000,
        "preprocessor": _mel_preprocessor(),
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 16,
            "activation": "relu",
            "conv_mask": True,
            "jasper": [_jasper_block(16, 3, False), _jasper_block(16, 7, True), _jasper_block(32, 1, False)],
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.SpeakerDecoder",
            "feat_in": 32,
            "num_classes": 4,
            "pool_mode": "attention",
            "emb_sizes": 8,
        },
        "loss": {"_target_": "nemo.collections.asr.losses.angularloss.AngularSoftmaxLoss", "scale": 30, "margin": 0.2},
    }
    return EncDecSpeakerLabelModel(cfg=OmegaConf.create(cfg))


# The share of the embedding layer's mean that calibration keeps: a speaker direction every clip shares, so that
# similarities to a target clip fall inside NeMo's reward range rather than around 0.
SHARED_SPEAKER_DIRECTION = 0.2


def _calibrated_speaker_verification(codec_path: str, audio_dir: str):
    """The tiny TitaNet with the BatchNorm statistics a trained model would have, measured on the clips it scores.

    With random weights and untrained statistics it embeds every clip alike: cosine similarity 0.998-0.999 between
    any two clips, above NeMo's best_ssim_achievable (0.9), so every similarity reward was clipped to 1, every group
    of rollouts had equal rewards and GRPO learned nothing. Here the statistics are measured on random-code decodes
    of the tiny codec (what rollouts sound like) and on the fixture wavs (the targets), and the embedding layer keeps
    SHARED_SPEAKER_DIRECTION of its mean: similarities of rollouts to a target then spread over about 0.2..0.9,
    inside NeMo's reward range (mean_ssim_dataset 0.6, best_ssim_achievable 0.9). Still NeMo's model, weights and
    forward; only the statistics a training run would have set are set."""
    import glob

    import librosa
    from nemo.collections.tts.models import AudioCodecModel

    model = _tiny_speaker_verification()
    rate = model.preprocessor._sample_rate
    clips = []
    with torch.random.fork_rng():  # the fixtures built after this one draw what they drew before calibration
        codec = AudioCodecModel.restore_from(codec_path, map_location="cpu")
        generator = torch.Generator().manual_seed(0)
        for frames in [4, 8, 12, 16, 20, 24] * 6:
            codes = torch.randint(0, int(np.prod(FSQ_LEVELS)), (1, NUM_CODEBOOKS, frames), generator=generator)
            with torch.no_grad():
                audio, length = codec.decode(tokens=codes, tokens_len=torch.tensor([frames]))
            clips.append(librosa.resample(audio[0, : length[0]].numpy(), orig_sr=SAMPLE_RATE, target_sr=rate))
    for path in sorted(glob.glob(os.path.join(audio_dir, "*.wav"))):
        samples, sample_rate = sf.read(path, dtype="float32")
        clips.append(librosa.resample(samples, orig_sr=sample_rate, target_sr=rate))
    signal = torch.zeros(len(clips), max(len(c) for c in clips))
    for i, clip in enumerate(clips):
        signal[i, : len(clip)] = torch.from_numpy(clip)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the one calibration batch
    model.train()
    with torch.no_grad():
        model.forward(input_signal=signal, input_signal_length=torch.tensor([len(c) for c in clips]))
    for norm in norms:
        norm.momentum = 0.1
    model.decoder.emb_layers[0][0].running_mean.mul_(1.0 - SHARED_SPEAKER_DIRECTION)
    model.eval()
    return model


def _tiny_ctc_asr():
    """A character CTC model standing in for nvidia/parakeet-ctc-0.6b (same .transcribe() interface)."""
    from nemo.collections.asr.models import EncDecCTCModel

    labels = list(" abcdefghijklmnopqrstuvwxyz'")
    cfg = {
        "sample_rate": 16000,
        "labels": labels,
        "preprocessor": _mel_preprocessor(),
        "encoder": {
            "_target_": "nemo.collections.asr.modules.ConvASREncoder",
            "feat_in": 16,
            "activation": "relu",
            "jasper": [_jasper_block(16, 3, False)],
        },
        "decoder": {
            "_target_": "nemo.collections.asr.modules.ConvASRDecoder",
            "feat_in": 16,
            "num_classes": len(labels),
            "vocabulary": labels,
        },
    }
    return EncDecCTCModel(cfg=OmegaConf.create(cfg))


def _save_tiny_whisper(path: str) -> int:
    """A Whisper with large-v3's front end (128 mel bins), tiny transformer, saved in fp16 like the real
    checkpoint, with a multilingual generation config like the real one (lang_to_id, task_to_id)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = {symbol: i for i, symbol in enumerate(sorted(ByteLevel.alphabet()))}
    specials = (
        ["<|endoftext|>", "<|startoftranscript|>"]
        + [f"<|{code}|>" for code in LANGUAGES]
        + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
    )
    for token in specials:
        vocab[token] = len(vocab)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=128), tokenizer=tokenizer)
    eot, sot = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=128,
        d_model=32,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        bos_token_id=eot,
        max_length=12,
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": vocab[f"<|{code}|>"] for code in LANGUAGES},
        task_to_id={"transcribe": vocab["<|transcribe|>"], "translate": vocab["<|translate|>"]},
        no_timestamps_token_id=vocab["<|notimestamps|>"],
        begin_suppress_tokens=[],
        suppress_tokens=[],
    )
    shutil.rmtree(path, ignore_errors=True)
    model.to(torch.float16).save_pretrained(path)
    processor.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def tiny_magpie_architecture(codec_path: str) -> dict:
    """The `model` config of a tiny MagpieTTS (decoder_ce), without datasets."""

    def block(n_layers, d_model, has_xattn=False, is_causal=True, kernel_size=1, **extra):
        return {
            "n_layers": n_layers,
            "d_model": d_model,
            "d_ffn": 2 * d_model,
            "sa_n_heads": 2,
            "kernel_size": kernel_size,
            "p_dropout": 0.0,
            "p_dropout_out": 0.0,
            "has_xattn": has_xattn,
            "is_causal": is_causal,
            "apply_norm_out": True,
            "max_length_causal_mask": 512,
            "use_learnable_pos_emb": True,
            **extra,
        }

    chars = dict(CHARS_TOKENIZER)
    d = 32
    return {
        "model_type": "decoder_ce",
        "use_text_conditioning_encoder": True,
        "text_conditioning_tokenizer_name": "text_ce_tokenizer",
        "context_duration_min": 1.0,
        "context_duration_max": 1.0,
        "load_cached_codes_if_available": True,
        "prior_scaling_factor": 0.5,
        "prior_end_step": 0,
        "prior_scaledown_start_step": 0,
        "indefinite_prior_prob": 0.0,
        "alignment_loss_scale": 0.002,
        "embedding_dim": d,
        "codecmodel_path": codec_path,
        "cfg_unconditional_prob": 0.0,
        "use_alignment_encoder": False,
        "local_transformer_type": "autoregressive",
        "local_transformer_n_layers": 1,
        "local_transformer_n_heads": 1,
        "local_transformer_hidden_dim": 16,
        "text_context_remapping_json": None,
        "text_context_remapping_prob": 0.0,
        # MagpieTTSDataset looks its tokenizer up under the name english_phoneme.
        "text_tokenizers": {"english_phoneme": dict(chars), "text_ce_tokenizer": dict(chars)},
        "encoder": block(1, d, kernel_size=3),
        "context_encoder": block(1, d, is_causal=False, kernel_size=3),
        "decoder": block(
            1,
            d,
            has_xattn=True,
            xa_d_head=16,
            xa_d_memory=d,
            xa_n_heads=1,
            apply_norm_to_cond=True,
            make_prior_window_strict=True,
        ),
        # As in NeMo's MagpieTTS configs: a checkpoint carries its training scheduler, which a PO stage replaces.
        "optim": {"_target_": "torch.optim.AdamW", "lr": 1e-4, "sched": {"name": "ExponentialLR", "gamma": 0.998}},
    }


def _save_reference_checkpoint(fixtures: TinyFixtures) -> None:
    """A Lightning-style checkpoint, like a MagpieTTS training run leaves: state_dict + hyper_parameters.cfg."""
    from nemo.collections.tts.models import MagpieTTSModel

    architecture = tiny_magpie_architecture(fixtures.codec)
    torch.manual_seed(0)
    model = MagpieTTSModel(cfg=OmegaConf.create(architecture))
    # As Lightning writes it for a NeMo model: the config as an OmegaConf DictConfig (torch's safe loader refuses
    # that class unless allowed, see nemo_ext/checkpoints.py).
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": {"cfg": OmegaConf.create(architecture)}},
        fixtures.reference_checkpoint,
    )


def _save_tiny_causal_lm_config(path: str) -> str:
    """A tiny Llama config in a local folder: what `AutoConfig.from_pretrained` reads for EasyMagpieTTS's
    backbone (real checkpoints name a hub model such as a Qwen; the weights come from the checkpoint)."""
    from transformers import LlamaConfig

    LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    ).save_pretrained(path)
    return path


def tiny_easy_magpie_architecture(codec_path: str, backbone: str) -> dict:
    """The `model` config of a tiny EasyMagpieTTS (decoder-only, Hugging Face backbone), without datasets."""
    chars = dict(CHARS_TOKENIZER)
    return {
        "codecmodel_path": codec_path,
        # As real EasyMagpieTTS checkpoints: the codes are re-indexed through the model's own quantizer (NeMo's
        # PO step converts codes unconditionally, so a config without one cannot train there).
        "vector_quantizer": {
            "_target_": "nemo.collections.tts.modules.audio_codec_modules.GroupFiniteScalarQuantizer",
            "num_groups": NUM_CODEBOOKS,
            "num_levels_per_group": EASY_FSQ_LEVELS,
        },
        "text_tokenizers": {"english_phoneme": dict(chars)},
        "transformer_hf_backend": backbone,
        "embedding_dim": 32,
        "hidden_dim": 32,
        "context_duration_min": 1.0,
        "context_duration_max": 1.0,
        "load_cached_codes_if_available": True,
        "optim": {"_target_": "torch.optim.AdamW", "lr": 1e-4, "sched": {"name": "ExponentialLR", "gamma": 0.998}},
    }


def _save_easy_reference_checkpoint(fixtures: TinyFixtures) -> None:
    from nemo.collections.tts.models.easy_magpietts import EasyMagpieTTSModel

    architecture = tiny_easy_magpie_architecture(fixtures.easy_codec, fixtures.easy_backbone)
    torch.manual_seed(0)
    model = EasyMagpieTTSModel(cfg=OmegaConf.create(architecture))
    torch.save(
        {"state_dict": model.state_dict(), "hyper_parameters": {"cfg": OmegaConf.create(architecture)}},
        fixtures.easy_reference_checkpoint,
    )
