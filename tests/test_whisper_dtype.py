import json

import pytest
import torch

from nemo_ext.errors import ConfigError
from nemo_ext.whisper_dtype import ALLOWED_DTYPES, checkpoint_dtype, from_pretrained_dtype_arg, parse_whisper_dtype


@pytest.mark.parametrize(
    ("value", "canonical"),
    [
        ("auto", "auto"),
        ("fp16", "float16"),
        ("float16", "float16"),
        ("bf16", "bfloat16"),
        ("BFloat16", "bfloat16"),
        ("fp32", "float32"),
        ("float32", "float32"),
        (torch.float16, "float16"),
    ],
)
def test_accepted_spellings(value, canonical):
    assert parse_whisper_dtype(value) == canonical


@pytest.mark.parametrize("value", ["int3", "fp8", "", None, 16, "float64"])
def test_rejected_values_name_key_value_and_allowed(value):
    with pytest.raises(ConfigError) as error:
        parse_whisper_dtype(value, key="model.whisper.dtype")
    message = str(error.value)
    assert message.startswith(f"model.whisper.dtype={value!r} is invalid")
    assert all(name in message for name in ALLOWED_DTYPES)


def test_from_pretrained_argument():
    assert from_pretrained_dtype_arg("auto") == "auto"
    assert from_pretrained_dtype_arg("bfloat16") is torch.bfloat16


@pytest.mark.parametrize("field", ["dtype", "torch_dtype"])
def test_checkpoint_dtype_reads_config_json(tmp_path, field):
    (tmp_path / "config.json").write_text(json.dumps({field: "float16"}))
    assert checkpoint_dtype(str(tmp_path)) is torch.float16


def test_checkpoint_dtype_unknown_for_hub_names_and_undeclared(tmp_path):
    assert checkpoint_dtype("openai/whisper-large-v3") is None
    (tmp_path / "config.json").write_text("{}")
    assert checkpoint_dtype(str(tmp_path)) is None
