"""MagpieTTS GRPO's step, owned here: generate the rollouts, score them, compute the advantages, update the policy.

    training_step
      -> process_batch_online_po                 one rollout batch, one update (several: policy_updates.py)
         -> _rollouts -> generate_and_reward
              infer_batch                        the rollout decoder `model.rollout_decoder` picks (rollout/)
              clips                              in memory (`rollout_audio_files: false`) or NeMo's wav files
              transcripts, speaker similarity    Whisper or NeMo ASR; the speaker model
              rewards, group validities          NeMo's arithmetic (grpo/magpietts_rewards.py)
              reward terms of ours, advantages   grpo/reward_shaping.py (TRL's batch scaling across ranks)
         -> _policy_update                       policy and reference forwards, the loss (grpo/policy_loss.py)

NeMo 3.0.0's `MagpieTTSModelOnlinePO` runs the same algorithm in `training_step`, `process_batch_online_po` and
`generate_and_reward`; those bodies run here no more. The parity harness (tests/test_parity_nemo.py) trains NeMo's
class next to this one, on NeMo's decoder, and compares losses, rewards, every per-item metrics file and the
weights; tests/test_grpo_seams.py compares the update with NeMo's loop term by term."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import torch

from nemo_ext.grpo.magpietts_rewards import RewardScale, group_validities
from nemo_ext.grpo.reward_shaping import RolloutScoring, apply_to_magpietts_rewards
from nemo_ext.models.policy_updates import PolicyUpdates
from nemo_ext.rollout_audio import InMemoryClips, nemo_asr_reading_clips
from nemo_ext.telemetry import phases
from nemo_ext.whisper_asr import transcribe_with_whisper

SHORT_CLIP_SAMPLES = 1000  # NeMo pads a shorter rollout clip to this many samples before scoring it


class GRPOStep(PolicyUpdates):
    """Mixed into MagpieTTSOnlinePO before NeMo's class."""

    def training_step(self, batch, batch_idx):
        if not self.automatic_optimization:
            return self._several_updates_step(batch)  # collects and logs its own learning figures
        return self._collecting_learning(lambda: self._one_update_step(batch))  # learning_health.py

    def _one_update_step(self, batch):
        if self.settings.empty_cuda_cache_every_step:
            torch.cuda.empty_cache()  # NeMo's training_step begins with it
        output = self.process_batch_online_po(batch, self.settings.n_generations_per_item)
        self.log("train_loss", output["loss"], prog_bar=True, sync_dist=True)
        self.log("train_kl_loss", output["kl_loss"], prog_bar=True, sync_dist=True)
        self.log("train_mean_reward", output["mean_reward"], prog_bar=True, sync_dist=True)
        self.log("train_std_reward", output["std_reward"], prog_bar=True, sync_dist=True)
        return output["loss"]

    def process_batch_online_po(self, batch, n_generations_per_item, mode="train"):
        rollouts = self._rollouts(batch, n_generations_per_item, mode)
        update = self._policy_update(rollouts)
        self._record_learning({"learning/kl": float(update.kl.detach())})
        return {
            "mean_reward": rollouts.mean_reward,
            "std_reward": rollouts.std_reward,
            "loss": update.loss,
            "kl_loss": update.kl,
            "batch_metrics": rollouts.metrics,
        }

    def generate_and_reward(
        self, batch, num_generations_per_item, mode="train", use_local_transformer_for_inference=False
    ):
        settings = self.settings
        anatomy = self.step_anatomy
        with anatomy.phase(phases.REWARD):  # the whole rollout; its own seconds are the reward arithmetic
            batch_repeated = self.repeat_items_in_batch(batch, num_generations_per_item)
            use_cfg, cfg_scale = False, 1.0
            cfg_prob = settings.inference_cfg_prob
            if cfg_prob == 1.0 or (cfg_prob > 0.0 and mode == "train"):
                use_cfg = random.random() < cfg_prob  # NeMo's draw, from Python's stream
                cfg_scale = settings.inference_cfg_scale
            params = self.inference_parameters
            params.cfg_scale = cfg_scale
            params.max_decoder_steps = self.max_decoder_steps
            params.temperature = settings.inference_temperature
            params.topk = settings.inference_topk
            params.use_LT_kv_cache = False
            generated = self.infer_batch(
                batch_repeated, use_cfg=use_cfg, use_local_transformer_for_inference=use_local_transformer_for_inference
            )
            clips = self._rollout_clips  # None: the clips are files (rollout_audio_files, or PESQ on)
            try:
                paths, durations = self._keep_clips(generated, clips)
                metrics = self._score(batch_repeated, generated, paths, durations, clips)
                output = self._rewards(batch, batch_repeated, generated, metrics, paths, num_generations_per_item)
            finally:
                if clips is not None:
                    clips.clips.clear()
        self._record_rollouts(output, num_generations_per_item, mode)
        return output

    def _audio_dir(self) -> str:
        return os.path.join(self.logger.log_dir, "audios")  # NeMo's folder (its per-item metrics files go there)

    def _keep_clips(self, generated, clips: InMemoryClips | None) -> tuple[list[str], list[float]]:
        """Each rollout's clip under NeMo's path: in `clips`, encoded exactly as the wav file would be, or written
        there with its codes as NeMo does (`rollout_audio_files: true`, or PESQ on, which reads the files)."""
        audio_dir = self._audio_dir()
        os.makedirs(audio_dir, exist_ok=True)
        paths, durations = [], []
        with self.step_anatomy.phase(phases.AUDIO_IO):
            for index in range(generated.predicted_audio.size(0)):
                audio = generated.predicted_audio[index].float().detach().cpu().numpy()
                audio = audio[: generated.predicted_audio_lens[index]]
                if audio.shape[0] < SHORT_CLIP_SAMPLES:
                    audio = np.pad(audio, (0, SHORT_CLIP_SAMPLES - audio.shape[0]))
                path = os.path.join(audio_dir, f"predicted_audioRank{self.global_rank}_{index}.wav")
                durations.append(len(audio) / self.sample_rate)
                if clips is not None:
                    clips.write(path, audio, self.sample_rate)
                else:
                    import soundfile as sf

                    sf.write(path, audio, self.sample_rate)
                    codes = generated.predicted_codes[index].cpu().type(torch.int16)
                    torch.save(codes[:, : generated.predicted_codes_lens[index]], path[: -len(".wav")] + "_codes.pt")
                paths.append(path)
        return paths, durations

    def _score(self, batch_repeated, generated, paths, durations, clips) -> list[dict]:
        """NeMo's per-rollout metrics: CER and WER against the text, speaker similarity to the item's target audio,
        PESQ when on; each written to NeMo's per-item metrics file."""
        from nemo.collections.asr.metrics.wer import word_error_rate
        from nemo.collections.tts.parts.utils.helpers import (
            get_speaker_embeddings_from_filepaths,
            process_text_for_cer,
        )

        anatomy = self.step_anatomy
        transcripts = [process_text_for_cer(text) for text in self._transcripts(batch_repeated, paths, clips)]
        opened = [clips.source(path) for path in paths] if clips is not None else paths
        with torch.no_grad(), anatomy.phase(phases.SPEAKER_VERIFICATION):
            model = self.eval_speaker_verification_model
            predicted = get_speaker_embeddings_from_filepaths(opened, model, self.device)
            targets = get_speaker_embeddings_from_filepaths(batch_repeated["audio_filepaths"], model, self.device)
        metrics = []
        for index, path in enumerate(paths):
            expected = process_text_for_cer(batch_repeated["raw_texts"][index])
            cer = min(max(word_error_rate([transcripts[index]], [expected], use_cer=True), 0.0), 1.0)
            wer = min(max(word_error_rate([transcripts[index]], [expected], use_cer=False), 0.0), 1.0)
            a, b = predicted[index].cpu().float().numpy(), targets[index].cpu().float().numpy()
            similarity = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
            metrics.append(
                {
                    "cer_gt": float(cer),
                    "wer_gt": float(wer),
                    "duration": durations[index],
                    "spk_similarity": float(similarity),
                    "pred_transcript": transcripts[index],
                    "gt_transcript": expected,
                    "codes_len": generated.predicted_codes_lens[index].item(),
                    "pesq": self._pesq(path) if self.settings.switches["use_pesq"] else 0.0,
                }
            )
        with anatomy.phase(phases.AUDIO_IO):
            for path, item in zip(paths, metrics, strict=True):
                with open(path[: -len(".wav")] + "_metrics.json", "w") as f:
                    json.dump(item, f)
        return metrics

    def _transcripts(self, batch_repeated, paths, clips) -> list[str]:
        rewards = self.settings.rewards
        anatomy = self.step_anatomy
        if rewards.reward_asr_model == "nemo":
            model = self.eval_asr_model
            transcribe = model.transcribe
            if clips is not None:
                rate = model.preprocessor._sample_rate
                transcribe = nemo_asr_reading_clips(model.transcribe, clips, rate, anatomy)
            with torch.no_grad():  # the model's transcribe is timed as `asr` (reward_models_mixin.py)
                return [hypothesis.text for hypothesis in transcribe(paths, batch_size=len(paths))]
        transcripts = [""] * len(paths)
        by_language: dict[str, list[int]] = {}
        for index, language in enumerate(batch_repeated["languages"]):
            by_language.setdefault(language, []).append(index)
        for language, indices in by_language.items():
            normalizer = self._get_cached_normalizer(language) if self._normalize_whisper_transcript else None
            texts = transcribe_with_whisper(
                [paths[i] for i in indices],
                language,
                self.whisper_processor,
                self.whisper_model,
                self.device,
                normalizer=normalizer,
                batch_size=self.whisper_batch_size,
                anatomy=anatomy,
                open_audio=clips.source if clips is not None else None,
            )
            for index, text in zip(indices, texts):
                transcripts[index] = text
        return transcripts

    def _pesq(self, path: str) -> float:
        import torchaudio

        audio, rate = torchaudio.load(path)  # PESQ keeps the clips as files (online_po.py)
        audio = audio.to(self.device)
        if rate != 16000:
            audio = torchaudio.functional.resample(audio, rate, 16000)
        _, pesq, _ = self.squim_objective_model(audio)
        return pesq.item()

    def _rewards(self, batch, batch_repeated, generated, metrics, paths, group_size) -> dict:
        settings = self.settings
        rewards = settings.rewards
        scale = RewardScale(
            mean_cer_dataset=rewards.mean_cer_dataset,
            mean_ssim_dataset=rewards.mean_ssim_dataset,
            best_ssim_achievable=rewards.best_ssim_achievable,
            cer_weight=rewards.weights["cer"],
            ssim_weight=rewards.weights["ssim"],
            pesq_weight=rewards.weights.get("pesq", 0.0),
            use_pesq=settings.switches["use_pesq"],
        )
        validities = group_validities(
            metrics, group_size, scale, rewards.best_cer_threshold, rewards.worst_cer_threshold
        )
        output = {
            "batch_repeated": batch_repeated,
            "metrics": metrics,
            "predicted_codes": generated.predicted_codes,
            "predicted_codes_lens": generated.predicted_codes_lens,
            "advantages": torch.zeros(len(metrics), device=self.device),
            "group_validities": torch.tensor(validities, device=self.device),
        }
        # This project's reward terms, each timed as its phase, then the advantages (NeMo's arithmetic; TRL's batch
        # scaling over every rank's rewards).
        extra = [term for term in settings.active_reward_terms() if not term.computed_by_nemo]
        scores = {}
        if extra:
            clips = self._rollout_clips
            scoring = RolloutScoring(
                metrics,
                batch_repeated,
                paths,
                lambda path: clips.read(path, dtype="float32") if clips is not None else _read(path),
            )
            for term in extra:
                with self.step_anatomy.phase(term.phase):
                    scores[term.name] = list(term.score(self, scoring))
        terms = {term.name: (term.metric, rewards.weights[term.name]) for term in extra}
        apply_to_magpietts_rewards(output, group_size, scores, terms, settings.reward_scaling)
        return output


def _read(path):
    import soundfile as sf

    return sf.read(path, dtype="float32")
