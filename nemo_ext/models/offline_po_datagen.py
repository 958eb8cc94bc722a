"""Offline PO data generation: synthesize each test item, score it (CER/WER with the ASR model, speaker
similarity), and write per-item audio, codes and metrics JSON for building the DPO preference set."""

from __future__ import annotations

import json
import os

import numpy as np
import soundfile as sf
import torch
from nemo.collections.asr.metrics.wer import word_error_rate
from nemo.collections.tts.models import MagpieTTSModel
from nemo.collections.tts.models import magpietts_preference_optimization as upstream
from nemo.collections.tts.parts.utils.helpers import get_speaker_embeddings_from_filepaths, process_text_for_cer
from nemo.utils import logging
from omegaconf import DictConfig

from nemo_ext.datagen_layout import AUDIO_DIR, CODES_SUFFIX, INVALID_TRANSCRIPT, METRICS_SUFFIX, sample_stem
from nemo_ext.datasets import MagpieTTSDatasetWithItemIds, adopt
from nemo_ext.models.reward_models_mixin import RewardModelsMixin
from nemo_ext.settings.fields import plain
from nemo_ext.settings.offline_po import DataGenSettings
from nemo_ext.settings.rollout_decoder import refuse_unsupported_architecture
from nemo_ext.telemetry import phases
from nemo_ext.whisper_asr import transcribe_with_whisper

# Generations shorter than this many samples are the one known cause of ASR failures (upstream's rule).
SHORT_AUDIO_SAMPLES = 1000


class MagpieTTSOfflinePODataGen(RewardModelsMixin, upstream.MagpieTTSModelOfflinePODataGen):
    """NeMo's `MagpieTTSModelOfflinePODataGen` with configurable reward models and a batched `test_step`.

    English (`pref_set_language: en`) is scored with the NeMo ASR model (`model.nemo_asr`), any other language with
    Whisper (`model.whisper`, needs `load_whisper_model: true`), as upstream does. Upstream's test_step
    re-transcribed the growing list of a batch's files once per item; this one transcribes the batch once."""

    step_phases = phases.DATAGEN_PHASES

    def __init__(self, cfg: DictConfig, trainer=None, settings: DataGenSettings | None = None):
        # The stage's settings (built from code: parsed from `cfg`, which refuses a non-English language without
        # Whisper before anything is built).
        settings = settings or DataGenSettings.parse(plain(cfg))
        self.settings = settings
        MagpieTTSModel.__init__(self, cfg, trainer)
        self._init_telemetry()
        self.rollout_decoder = settings.rollout_decoder
        refuse_unsupported_architecture(self, self.rollout_decoder)
        if not settings.scored_with_whisper:
            self._load_nemo_asr(settings.nemo_asr)
        self._load_speaker_verification(settings.speaker_verification)
        self._normalize_whisper_transcript = settings.normalize_whisper_transcript
        self._normalizer_cache = {}
        if settings.load_whisper_model:
            self._load_whisper(settings.whisper)

    def get_dataset(self, dataset_cfg, dataset_type):
        # Batches carry each item's input manifest line (`item_ids`), written into its metrics file.
        return adopt(super().get_dataset(dataset_cfg, dataset_type), MagpieTTSDatasetWithItemIds)

    def output_dir(self) -> str:
        # Upstream writes under self.logger.log_dir and crashes without a logger.
        root = self.logger.log_dir if self.logger is not None and self.logger.log_dir else self.trainer.default_root_dir
        path = os.path.join(root, AUDIO_DIR)
        os.makedirs(path, exist_ok=True)
        return path

    def test_step(self, batch, batch_idx):
        # Each item's input manifest line (the recipe's dataset carries it); files are named by it, so a resumed
        # or requeued run writes the items it still lacks under the names an uninterrupted run would use.
        manifest_lines = batch.get("item_ids")
        if manifest_lines is None:  # a dataset without ids: NeMo's numbering, per rank
            first_item = batch_idx * self._test_dl.batch_size
            manifest_lines = [None] * len(batch["raw_texts"])
            item_ids = [first_item + i for i in range(len(manifest_lines))]
        else:
            item_ids = list(manifest_lines)
        seed = self.settings.datagen_seed
        if seed is not None:
            # Reproducible per batch, whatever ran before it (a resumed run, another rank split).
            torch.manual_seed(int(seed) + int(item_ids[0]))
        anatomy = self.step_anatomy
        # `datagen` holds the batch; generation (codec decode inside it), audio I/O, ASR and speaker verification
        # are phases within it; its own seconds are the metrics files.
        with torch.no_grad(), anatomy.phase(phases.DATAGEN):
            self._set_inference_parameters()
            output = self.infer_batch(batch, use_cfg=self.settings.inference_use_cfg)
            audio_dir = self.output_dir()
            with anatomy.phase(phases.AUDIO_IO):
                paths, durations = self._save_generations(output, item_ids, audio_dir)
            with anatomy.phase(phases.ASR):
                transcripts = self._transcribe_or_none(paths, output.predicted_audio_lens)
            if transcripts is None:
                similarities = [0.0] * len(paths)
            else:
                with anatomy.phase(phases.SPEAKER_VERIFICATION):
                    similarities = self._speaker_similarities(paths, batch["audio_filepaths"])
            for i, item_id in enumerate(item_ids):
                gt_transcript = process_text_for_cer(batch["raw_texts"][i])
                pred = INVALID_TRANSCRIPT if transcripts is None else transcripts[i]
                metrics = {
                    "cer_gt": 1.0
                    if transcripts is None
                    else float(word_error_rate([pred], [gt_transcript], use_cer=True)),
                    "wer_gt": 1.0
                    if transcripts is None
                    else float(word_error_rate([pred], [gt_transcript], use_cer=False)),
                    "duration": durations[i],
                    "spk_similarity": float(similarities[i]),
                    "pred_transcript": pred,
                    "gt_transcript": gt_transcript,
                    # The input manifest line this sample was generated for: the pair stage groups by it.
                    "item_id": manifest_lines[i],
                }
                # Written last and atomically: a metrics file marks an item as complete (wav and codes first).
                path = sample_stem(audio_dir, self.global_rank, item_id) + METRICS_SUFFIX
                with open(f"{path}.tmp", "w") as f:
                    json.dump(metrics, f)
                os.replace(f"{path}.tmp", path)

    def _set_inference_parameters(self) -> None:
        params, settings = self.inference_parameters, self.settings
        params.max_decoder_steps = settings.max_decoder_steps
        params.temperature = settings.inference_temperature
        params.topk = settings.inference_topk
        params.cfg_scale = settings.inference_cfg_scale

    def _save_generations(self, output, item_ids, audio_dir):
        paths, durations = [], []
        for i, item_id in enumerate(item_ids):
            audio = output.predicted_audio[i].float().cpu().numpy()[: output.predicted_audio_lens[i]]
            stem = sample_stem(audio_dir, self.global_rank, item_id)
            sf.write(f"{stem}.wav", audio, self.sample_rate)
            codes = output.predicted_codes[i].cpu().type(torch.int16)[:, : output.predicted_codes_lens[i]]
            torch.save(codes, f"{stem}{CODES_SUFFIX}")
            paths.append(f"{stem}.wav")
            durations.append(len(audio) / self.sample_rate)
        return paths, durations

    def _transcribe_or_none(self, paths, audio_lens):
        """Transcripts normalized for CER, or None when ASR failed because a generation was too short."""
        try:
            if not self.settings.scored_with_whisper:
                hypotheses = self.eval_asr_model.transcribe(paths, batch_size=len(paths))
                return [process_text_for_cer(h.text) for h in hypotheses]
            language = self.settings.pref_set_language
            normalizer = self._get_cached_normalizer(language) if self._normalize_whisper_transcript else None
            texts = transcribe_with_whisper(
                paths,
                language,
                self.whisper_processor,
                self.whisper_model,
                self.device,
                normalizer=normalizer,
                batch_size=self.whisper_settings.batch_size,
                anatomy=self.step_anatomy,
            )
            return [process_text_for_cer(t) for t in texts]
        except Exception as error:
            if not bool((audio_lens < SHORT_AUDIO_SAMPLES).any()):
                raise
            logging.warning(
                f"ASR failed on a batch with a generation under {SHORT_AUDIO_SAMPLES} samples ({error}); "
                f"its items are written with CER 1.0 and transcript {INVALID_TRANSCRIPT}"
            )
            return None

    def _speaker_similarities(self, predicted_paths, reference_paths):
        sv = self.eval_speaker_verification_model
        # float(): under trainer.precision=bf16-true the speaker model runs in bf16, which NumPy has no type for.
        predicted = get_speaker_embeddings_from_filepaths(predicted_paths, sv, self.device).float().cpu().numpy()
        reference = get_speaker_embeddings_from_filepaths(reference_paths, sv, self.device).float().cpu().numpy()
        # NeMo's formula, item by item: a vectorized form differs in the last float32 bit (parity test).
        return [np.dot(p, r) / (np.linalg.norm(p) * np.linalg.norm(r)) for p, r in zip(predicted, reference)]
