"""`model.whisper.backend: ctranslate2`: settings checked before any model, the dtype -> compute type table, the
memory a load takes (measured, CTranslate2 allocates outside torch), transcripts equal to transformers' on the real
tiny.en, and a GRPO step on the tiny fixtures with the converted tiny Whisper, its figures read back from W&B."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nemo_ext.errors import ConfigError
from nemo_ext.settings.whisper import WhisperSettings, fold_whisper_shortcut
from nemo_ext.whisper_ct2 import compute_type_for, load_ct2_whisper

REPO = Path(__file__).resolve().parents[1]
PRETRAINED = REPO / ".cache" / "whisper-tiny.en"  # bash scripts/fetch_pretrained_whisper.sh (scripts/test.sh)
PRETRAINED_CT2 = REPO / ".cache" / "whisper-tiny.en-ct2"
needs_real_tiny_en = pytest.mark.skipif(
    not (PRETRAINED / "model.safetensors").exists()
    or not (PRETRAINED_CT2 / "model.bin").exists()
    or not shutil.which("espeak-ng"),
    reason="needs bash scripts/fetch_pretrained_whisper.sh and espeak-ng (both run by scripts/test.sh)",
)


@pytest.fixture(scope="module")
def tiny_ct2(tiny, tmp_path_factory):
    """The tiny fixtures' Whisper converted with the documented command (the converter ships with ctranslate2);
    its generation_config.json carries the tiny model's short max_length (32 positions)."""
    out = tmp_path_factory.mktemp("ct2") / "whisper-tiny-ct2"
    converter = Path(sys.executable).with_name("ct2-transformers-converter")
    subprocess.run(
        [
            str(converter),
            "--model",
            tiny.whisper,
            "--output_dir",
            str(out),
            "--copy_files",
            "tokenizer.json",
            "generation_config.json",
        ],
        check=True,
        capture_output=True,
    )
    return str(out)


def test_int8_and_a_non_ct2_directory_are_refused_with_the_key_and_what_is_allowed(tiny, tmp_path):
    with pytest.raises(ConfigError) as error:
        WhisperSettings.parse({"dtype": "int8"})
    assert "model.whisper.dtype" in str(error.value) and "int8 (with model.whisper.backend=ctranslate2)" in str(
        error.value
    )
    with pytest.raises(ConfigError) as error:
        WhisperSettings.parse({"backend": "faster"})
    assert "model.whisper.backend" in str(error.value) and "transformers, ctranslate2" in str(error.value)
    # A Hugging Face directory is not a CTranslate2 one: the error names the missing file and the converter.
    with pytest.raises(ConfigError) as error:
        WhisperSettings.parse({"backend": "ctranslate2", "pretrained": tiny.whisper})
    message = str(error.value)
    assert "model.whisper.pretrained" in message and "missing: model.bin" in message
    assert "ct2-transformers-converter --model" in message
    with pytest.raises(ConfigError, match="model.whisper.dtype"):
        WhisperSettings.parse({"dtype": "int4", "backend": "ctranslate2"})


def test_the_command_line_shortcut_can_ask_for_int8_of_a_ct2_block(tiny_ct2):
    container = {"model": {"whisper": {"backend": "ctranslate2", "pretrained": tiny_ct2}}, "whisper": {"dtype": "int8"}}
    folded = fold_whisper_shortcut(container)
    settings = WhisperSettings.parse(folded["model"]["whisper"])
    assert (settings.backend, settings.dtype, settings.pretrained) == ("ctranslate2", "int8", tiny_ct2)


@pytest.mark.parametrize(
    ("dtype", "device", "compute_type"),
    [
        ("auto", "cpu", "default"),
        ("float32", "cpu", "float32"),
        ("float16", "cuda:0", "float16"),
        ("bfloat16", "cuda", "bfloat16"),
        ("int8", "cpu", "int8"),
        ("int8", "cuda:1", "int8_float16"),
    ],
)
def test_whisper_dtype_maps_to_a_compute_type(dtype, device, compute_type):
    assert compute_type_for(dtype, device) == compute_type


def _loaded_bytes(path: str, dtype: str) -> int:
    """What a load takes, in a fresh process (a second load in one process reuses freed memory)."""
    code = (
        "import sys; from nemo_ext.whisper_ct2 import load_ct2_whisper; "
        "print(load_ct2_whisper(sys.argv[1], sys.argv[2], 'cpu')[1].loaded_bytes)"
    )
    done = subprocess.run([sys.executable, "-c", code, path, dtype], check=True, capture_output=True, text=True)
    return int(done.stdout.split()[-1])


@needs_real_tiny_en
def test_the_load_is_measured_and_int8_takes_about_a_quarter_of_float32():
    # tiny.en: 37.8 M parameters, float32 weights of 151 MB. On a CPU the figure is the RSS the load added: the
    # weights and what reading the fp16 file left allocated (279 MB for float32, 86 MB for int8 here).
    float32, int8 = _loaded_bytes(str(PRETRAINED_CT2), "float32"), _loaded_bytes(str(PRETRAINED_CT2), "int8")
    assert 151e6 < float32 < 450e6, float32
    assert 38e6 < int8 < 0.5 * float32, (int8, float32)


@needs_real_tiny_en
def test_transcripts_equal_transformers_on_the_real_tiny_en(tmp_path):
    from nemo_ext.whisper_asr import load_whisper, transcribe_with_whisper

    sentences = [
        "The quick brown fox jumps over the lazy dog.",
        "Please call me tomorrow morning.",
        "She sells sea shells by the sea shore.",
        "The weather today is cold and windy.",
        "My phone battery died during the meeting.",
    ]
    wavs = []
    for i, sentence in enumerate(sentences):
        wavs.append(str(tmp_path / f"s{i}.wav"))
        subprocess.run(["espeak-ng", "-w", wavs[-1], sentence], check=True)
    processor, model = load_whisper(WhisperSettings.parse({"pretrained": str(PRETRAINED), "dtype": "fp32"}))
    reference = transcribe_with_whisper(wavs, "en", processor, model, "cpu")
    processor, model = load_ct2_whisper(str(PRETRAINED_CT2), "float32", "cpu")
    assert not model.generation_config.is_multilingual and model.n_mels == 80
    assert transcribe_with_whisper(wavs, "en", processor, model, "cpu", batch_size=2) == reference
    # int8: within the reward noise measured on real speech (docs/benchmarks.md: mean abs CER difference 0.014 on
    # English with the base model; here only letter case differed). int8 kernels differ between CPUs, so the test
    # bounds the rewards' inputs, not the exact text.
    from nemo_ext_tools.whisper_benchmark import character_error_rate

    processor, model = load_ct2_whisper(str(PRETRAINED_CT2), "int8", "cpu")
    int8 = transcribe_with_whisper(wavs, "en", processor, model, "cpu")
    differences = [
        abs(character_error_rate(a, text) - character_error_rate(b, text))
        for a, b, text in zip(int8, reference, sentences, strict=True)
    ]
    assert max(differences) <= 0.2 and sum(differences) / len(differences) <= 0.05, (int8, reference)
    assert "quick brown fox" in reference[0].lower()


@pytest.mark.e2e
def test_a_grpo_step_with_the_ct2_reward_logs_what_its_load_took(tiny_config, tmp_path, tiny_ct2):
    from nemo_ext.stages import ONLINE_PO
    from nemo_ext.whisper_ct2 import CT2WhisperModel
    from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

    run = ONLINE_PO.run(
        tiny_config(
            "online_po_tiny",
            "model.whisper.backend=ctranslate2",
            f"model.whisper.pretrained={tiny_ct2}",
            "+whisper.dtype=int8",
            "trainer.max_steps=1",
        )
    )
    model = run.model
    assert run.trainer.global_step == 1
    assert isinstance(model.whisper_model, CT2WhisperModel) and model.whisper_model.compute_type == "int8"
    # Not a torch module: nothing of it in the optimizer, the state dict or DDP's lists.
    assert "whisper_model" not in dict(model.named_children())
    assert not any(key.startswith("whisper_model.") for key in model.state_dict())
    metrics = [json.load(open(p)) for p in Path(run.log_dir, "audios").glob("*_metrics.json")]
    # Every rollout was transcribed by the CTranslate2 model (the tiny random Whisper says nothing: CER 1).
    assert len(metrics) == 4 and all(m["cer_gt"] == 1.0 and m["pred_transcript"] == "" for m in metrics)

    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    logged = read_offline_run(run_file)
    assert logged.series("whisper/weights_bytes")[0] == model.whisper_model.loaded_bytes
    assert "whisper/param_count" not in logged.history[0]
    assert logged.config["whisper/dtype_loaded"] == "ct2:int8_float32"  # what CTranslate2 runs: int8 weights
    assert logged.config["whisper/dtype_configured"] == "int8"
    assert os.path.isdir(run.log_dir)
