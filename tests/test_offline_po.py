"""Offline PO end to end on the tiny fixtures: data generation (trainer.test) and one DPO step."""

import json

import pytest
import torch

from nemo_ext.recipes.offline_po_datagen import run_offline_po_datagen
from nemo_ext.recipes.offline_po_dpo import run_offline_po_dpo

pytestmark = pytest.mark.e2e

METRIC_KEYS = {"cer_gt", "wer_gt", "duration", "spk_similarity", "pred_transcript", "gt_transcript", "item_id"}


@pytest.mark.parametrize(
    ("override", "dtype"), [("+whisper.dtype=auto", torch.float16), ("+whisper.dtype=fp32", torch.float32)]
)
def test_datagen_scores_every_item_with_whisper_in_configured_dtype(tiny_config, override, dtype):
    run = run_offline_po_datagen(tiny_config("offline_po_datagen_tiny", override))
    assert run.model.whisper_model.dtype == dtype
    assert not any(p.requires_grad for p in run.model.whisper_model.parameters())
    files = run.metrics_files()
    assert len(files) == 4  # one per manifest item
    assert sorted(json.loads(open(p).read())["item_id"] for p in files) == [0, 1, 2, 3]
    for path in files:
        metrics = json.loads(open(path).read())
        assert set(metrics) == METRIC_KEYS
        assert 0.0 <= metrics["cer_gt"] and -1.0 <= metrics["spk_similarity"] <= 1.0
        assert metrics["gt_transcript"] and metrics["pred_transcript"] != "<INVALID>"
        assert metrics["duration"] > 0


def test_datagen_english_uses_the_configured_nemo_asr_and_no_whisper(tiny_config, tiny):
    run = run_offline_po_datagen(tiny_config("offline_po_datagen_tiny", "model.pref_set_language=en"))
    assert getattr(run.model, "whisper_model", None) is None  # load_whisper_model: null resolved to false
    assert type(run.model.eval_asr_model).__name__ == "EncDecCTCModel"  # the tiny .nemo, not a hub download
    assert len(run.metrics_files()) == 4


def test_one_dpo_step(tiny_config, tiny):
    run = run_offline_po_dpo(tiny_config("offline_po_dpo_tiny", "+whisper.dtype=bf16"))
    assert run.trainer.global_step == 1
    assert torch.isfinite(run.trainer.logged_metrics["train_loss"])
    reference = torch.load(tiny.reference_checkpoint, weights_only=False)["state_dict"]
    trained = run.model.state_dict()
    assert any(not torch.equal(reference[k], trained[k]) for k in reference if k.startswith("decoder."))
