"""Offline PO end to end on the tiny fixtures: data generation (trainer.test) and one DPO step."""

import json

import pytest
import torch

from nemo_ext.stages import OFFLINE_PO_DATAGEN, OFFLINE_PO_DPO

pytestmark = pytest.mark.e2e

METRIC_KEYS = {"cer_gt", "wer_gt", "duration", "spk_similarity", "pred_transcript", "gt_transcript", "item_id"}


@pytest.mark.parametrize(
    ("override", "dtype"), [("+whisper.dtype=auto", torch.float16), ("+whisper.dtype=fp32", torch.float32)]
)
def test_datagen_scores_every_item_with_whisper_in_configured_dtype(tiny_config, override, dtype):
    run = OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny", override))
    assert run.model.whisper_model.dtype == dtype
    assert not any(p.requires_grad for p in run.model.whisper_model.parameters())
    files = run.metrics_files()
    assert len(files) == 4  # one per manifest item
    assert sorted(json.loads(open(p).read())["item_id"] for p in files) == [0, 1, 2, 3]
    assert_metrics_recomputed_from_the_files(run, files)


def assert_metrics_recomputed_from_the_files(run, files):
    """Each metrics file says what its own wav and the manifest say, computed here independently: the text,
    CER/WER of the transcript written, duration of the wav, cosine of the speaker embeddings of both wavs. The
    speaker model embeds a DataGen batch's clips together (padded to the longest), so they are embedded here in the
    same batches: generated clips of items 0-1, 2-3, ..., and their target clips."""
    import numpy as np
    import soundfile as sf
    from nemo.collections.asr.metrics.wer import word_error_rate
    from nemo.collections.tts.parts.utils.helpers import get_speaker_embeddings_from_filepaths, process_text_for_cer

    manifest = [json.loads(line) for line in open(run.model.cfg.test_ds.datasets.dataset_meta.data.manifest_path)]
    by_item = {row["magpie_item_id"]: row for row in manifest}
    batch_size = run.model.cfg.test_ds.dataloader_params.batch_size
    by_metrics = {path: json.loads(open(path).read()) for path in files}
    ordered = sorted(files, key=lambda path: by_metrics[path]["item_id"])
    sv = run.model.eval_speaker_verification_model
    cosines = {}
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start : start + batch_size]
        wavs = [path.replace("_metrics.json", ".wav") for path in batch]
        targets = [by_item[by_metrics[path]["item_id"]]["audio_filepath"] for path in batch]
        generated = get_speaker_embeddings_from_filepaths(wavs, sv, "cpu").numpy()
        reference = get_speaker_embeddings_from_filepaths(targets, sv, "cpu").numpy()
        for path, g, r in zip(batch, generated, reference):
            cosines[path] = float(np.dot(g, r) / (np.linalg.norm(g) * np.linalg.norm(r)))
    for path in files:
        metrics = by_metrics[path]
        assert set(metrics) == METRIC_KEYS
        row, wav = by_item[metrics["item_id"]], path.replace("_metrics.json", ".wav")
        assert metrics["gt_transcript"] == process_text_for_cer(row["text"]) != ""
        assert metrics["pred_transcript"] != "<INVALID>"
        pred, gt = metrics["pred_transcript"], metrics["gt_transcript"]
        assert metrics["cer_gt"] == word_error_rate([pred], [gt], use_cer=True)
        assert metrics["wer_gt"] == word_error_rate([pred], [gt], use_cer=False)
        audio, rate = sf.read(wav)
        assert metrics["duration"] == pytest.approx(len(audio) / rate, abs=1e-9)
        assert metrics["spk_similarity"] == pytest.approx(cosines[path], rel=1e-5)


def test_datagen_english_uses_the_configured_nemo_asr_and_no_whisper(tiny_config, tiny):
    run = OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny", "model.pref_set_language=en"))
    assert getattr(run.model, "whisper_model", None) is None  # load_whisper_model: null resolved to false
    assert type(run.model.eval_asr_model).__name__ == "EncDecCTCModel"  # the tiny .nemo, not a hub download
    assert len(run.metrics_files()) == 4
    assert_metrics_recomputed_from_the_files(run, run.metrics_files())


def test_asr_failure_is_invalid_only_for_short_generations(tiny_config, monkeypatch):
    """NeMo's rule: an ASR error on a batch with a generation under 1000 samples writes every item of the batch
    with transcript <INVALID>, CER/WER 1.0, similarity 0.0 (the pair stage skips those groups); any other ASR
    error stops the run. The tiny ASR does not fail on short clips, so the failure is simulated, and the
    threshold raised so the tiny generations count as short."""
    from nemo_ext.models import offline_po_datagen as datagen

    run = OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny", "model.pref_set_language=en"))
    model = run.model
    batch = next(iter(model._test_dl))

    def failing_transcribe(*args, **kwargs):
        raise RuntimeError("ASR failed on this batch")

    monkeypatch.setattr(model.eval_asr_model, "transcribe", failing_transcribe)
    model.eval()  # as Lightning's test loop calls test_step
    with pytest.raises(RuntimeError, match="ASR failed on this batch"):  # generations are long: a real error
        model.test_step(batch, 0)
    monkeypatch.setattr(datagen, "SHORT_AUDIO_SAMPLES", 10**9)
    model.test_step(batch, 0)
    for item in batch["item_ids"]:
        path = f"{run.audio_dir}/predicted_audioRank0_{item}_metrics.json"
        metrics = json.loads(open(path).read())
        assert metrics["pred_transcript"] == "<INVALID>"
        assert (metrics["cer_gt"], metrics["wer_gt"], metrics["spk_similarity"]) == (1.0, 1.0, 0.0)
        assert metrics["gt_transcript"] and metrics["item_id"] == item


@pytest.mark.slow  # builds the pynini normalizer grammar: about 16 s a language
@pytest.mark.parametrize("stage", ["online_po", "offline_po_datagen"])
def test_whisper_transcripts_are_normalized_when_asked(tiny_config, monkeypatch, stage):
    """`normalize_whisper_transcript: true` (the default; the tiny configs turn it off for speed): NeMo's pynini
    normalizer is built for the clips' language and every Whisper transcript goes through it."""
    from nemo_text_processing.text_normalization.normalize import Normalizer

    normalized = []
    original = Normalizer.normalize

    def counting(self, text, *args, **kwargs):
        normalized.append((self.lang, text))
        return original(self, text, *args, **kwargs)

    monkeypatch.setattr(Normalizer, "normalize", counting)
    overrides = ["model.normalize_whisper_transcript=true", "trainer.max_steps=1"]
    if stage == "online_po":
        from nemo_ext.stages import ONLINE_PO

        ONLINE_PO.run(tiny_config("online_po_tiny", "model.reward_asr_model=whisper", *overrides))
        expected = 4  # batch 2 x 2 generations
    else:
        OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny", *overrides[:1]))
        expected = 4  # the 4 manifest items
    assert len(normalized) == expected
    assert {lang for lang, _ in normalized} == {"de"}  # the tiny manifest's language


def test_one_dpo_step(tiny_config, tiny):
    run = OFFLINE_PO_DPO.run(tiny_config("offline_po_dpo_tiny", "+whisper.dtype=bf16"))
    assert run.trainer.global_step == 1
    assert torch.isfinite(run.trainer.logged_metrics["train_loss"])
    reference = torch.load(tiny.reference_checkpoint, weights_only=False)["state_dict"]
    trained = run.model.state_dict()
    assert any(not torch.equal(reference[k], trained[k]) for k in reference if k.startswith("decoder."))
