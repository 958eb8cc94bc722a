"""StepTelemetry: a Lightning callback that measures every step (GRPO) or batch (DataGen) of a run: Whisper's weights
in memory, the process's and the GPU's memory, and the seconds and CUDA peak of each declared phase of the step,
logged through the Lightning loggers (W&B under exp_manager), reduced across ranks so a multi-node run shows its
worst rank.

Logged names (GB = 1e9 bytes). Each figure is logged as the max over ranks under its own name, with `_min` and
`_mean` siblings:
  at fit/test start: whisper/weights_bytes, whisper/weights_gb, whisper/param_count, whisper/bytes_per_param (the
                     last two for a torch Whisper; a CTranslate2 one's weights_bytes is what its load took),
                     gpu/allocated_gb (after Lightning moved and cast the model)
  per step / batch:  time/step_s, time/<phase>_s for every phase the model declares (seconds of its own, phases
                     nested in it excluded; time/other_s is the rest of the step), gpu/<phase>_peak_allocated_gb,
                     gpu/allocated_gb, gpu/reserved_gb, gpu/peak_allocated_gb (whole step), gpu/device_used_gb
                     (the device as torch.cuda.mem_get_info sees it: other processes and NCCL buffers too),
                     cpu/rss_gb, cpu/peak_rss_gb
  as hyperparameters: whisper/dtype_configured, whisper/dtype_loaded, whisper/pretrained
CUDA figures are absent on a CPU-only run. Every rank also appends its own figures to <log_dir>/memory/rank<R>.jsonl;
at the end rank 0 draws <log_dir>/memory/step_anatomy.png and logs it to W&B."""

from __future__ import annotations

import json
import math
import os
import socket
import warnings

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from nemo_ext.telemetry import oom_snapshot
from nemo_ext.telemetry.figures import phase_summary_lines, reduce_across_ranks, steady_state
from nemo_ext.telemetry.memory import cuda_memory, module_footprint, process_peak_rss_bytes, process_rss_bytes
from nemo_ext.whisper_dtype import AUTO, to_torch_dtype

GB = 1e9


def expected_whisper_dtype(pl_module) -> torch.dtype | None:
    """What `model.whisper.dtype` asked for: the dtype `auto` resolved to at load time, or the explicit one."""
    settings = getattr(pl_module, "whisper_settings", None)
    if settings is None or settings.on_ctranslate2:  # CTranslate2 keeps its weights outside torch's casts
        return None
    return pl_module.whisper_dtype_at_load if settings.dtype == AUTO else to_torch_dtype(settings.dtype)


def whisper_footprint(whisper):
    """A torch Whisper's parameters and buffers; a CTranslate2 one's memory as measured at load (it allocates
    outside torch: nemo_ext/whisper_ct2.py)."""
    return whisper.footprint() if hasattr(whisper, "footprint") else module_footprint(whisper)


class StepTelemetry(Callback):
    def __init__(self, log_every_n_steps: int = 1, oom_snapshot: bool = False, warmup_steps: int = 1):
        if log_every_n_steps < 1:
            raise ValueError(f"telemetry.log_every_n_steps must be >= 1, got {log_every_n_steps}")
        self.log_every_n_steps = log_every_n_steps
        self.oom_snapshot = oom_snapshot
        self.warmup_steps = warmup_steps  # left out of the summary and the picture (kept in the rank files)
        self._recording = False
        self.last_reduced: dict[str, float] = {}
        self.loaded: dict[str, float] = {}
        self.dtypes: tuple[str, str] | None = None  # (configured, in memory)
        self._rank_file: str | None = None
        self._warned_logger_failure = False
        self.history: list[dict[str, float]] = []  # the reduced figures of every logged step
        self.phases: tuple[str, ...] = ()

    # ---- start: what is actually in memory once the strategy and precision plugin are done ----
    def on_fit_start(self, trainer, pl_module):
        self._prepare(trainer, pl_module)

    def on_train_start(self, trainer, pl_module):
        # Not on_fit_start: a resumed run's checkpoint (and its global step) is restored only after that hook.
        self._report_loaded(trainer, pl_module)

    def on_test_start(self, trainer, pl_module):
        self._prepare(trainer, pl_module)
        self._report_loaded(trainer, pl_module)

    def _prepare(self, trainer, pl_module):
        # Every rank must agree on this path; trainer.log_dir is itself a collective (broadcast).
        self._rank_file = os.path.join(
            trainer.log_dir or trainer.default_root_dir, "memory", f"rank{trainer.global_rank}.jsonl"
        )
        os.makedirs(os.path.dirname(self._rank_file), exist_ok=True)
        pl_module.step_anatomy.enabled = True
        pl_module.step_anatomy.device = pl_module.device
        if self.oom_snapshot:
            self._recording = oom_snapshot.start_recording()
            if not self._recording:
                rank_zero_warn("telemetry.oom_snapshot: no CUDA device, so no memory history is recorded")
        whisper = getattr(pl_module, "whisper_model", None)
        if whisper is not None:
            self._log_dtypes(trainer, pl_module, whisper_footprint(whisper))

    def _report_loaded(self, trainer, pl_module):
        figures = self._process_figures(pl_module.device)
        figures.pop("gpu/peak_allocated_gb", None)
        whisper = getattr(pl_module, "whisper_model", None)
        if whisper is not None:
            footprint = whisper_footprint(whisper)
            figures.update(
                {
                    "whisper/weights_bytes": float(footprint.weights_bytes),
                    "whisper/weights_gb": footprint.weights_bytes / GB,
                }
            )
            if footprint.param_count:
                figures["whisper/param_count"] = float(footprint.param_count)
                figures["whisper/bytes_per_param"] = footprint.bytes_per_param
        self.loaded = self._reduce_and_log(trainer, figures, step=trainer.global_step, phase="load")

    def _log_dtypes(self, trainer, pl_module, footprint):
        settings = pl_module.whisper_settings
        loaded = ",".join(footprint.dtypes)
        self.dtypes = (settings.dtype, loaded)
        expected = expected_whisper_dtype(pl_module)
        params = {
            "whisper/dtype_configured": settings.dtype,
            "whisper/dtype_loaded": loaded,
            "whisper/pretrained": settings.pretrained,
        }
        self._safe_log(trainer, lambda logger: logger.log_hyperparams(params))
        expected_name = str(expected).removeprefix("torch.")
        if expected is not None and loaded != expected_name:
            rank_zero_warn(
                f"Whisper is in {loaded} but model.whisper.dtype={settings.dtype} loaded it as {expected_name}: "
                f"trainer.precision={trainer.precision} cast it (use 32-true, 16-true or *-mixed to keep it)."
            )

    # ---- per step (GRPO) / per batch (DataGen) ----
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        pl_module.step_anatomy.start_step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._end_step(trainer, pl_module, step=trainer.global_step)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        pl_module.step_anatomy.start_step()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        self._end_step(trainer, pl_module, step=batch_idx + 1)

    def _end_step(self, trainer, pl_module, step: int):
        anatomy = pl_module.step_anatomy
        step_figures = anatomy.end_step()
        if step % self.log_every_n_steps:
            return
        phases = self.phases = anatomy.phases
        figures = self._process_figures(pl_module.device)
        figures["time/step_s"] = step_figures.step_seconds or 0.0
        for phase in phases:
            # Every rank logs every phase (the reduction needs one key set): 0 s for one that did not run.
            figures[f"time/{phase}_s"] = step_figures.seconds.get(phase, 0.0)
        if step_figures.step_peak is not None:
            figures["gpu/peak_allocated_gb"] = step_figures.step_peak / GB
            for phase in phases[:-1]:
                peak = step_figures.peaks.get(phase)
                figures[f"gpu/{phase}_peak_allocated_gb"] = math.nan if peak is None else peak / GB
        self.last_reduced = self._reduce_and_log(trainer, figures, step=step, phase="step")
        self.history.append({"step": step, **self.last_reduced})

    # ---- end: the console summary and the picture ----
    def on_fit_end(self, trainer, pl_module):
        self._summary(trainer)

    def on_test_end(self, trainer, pl_module):
        self._summary(trainer)

    def _summary(self, trainer):
        loaded, last = self.loaded, self.last_reduced
        parts = []
        if "whisper/weights_gb" in loaded:
            configured, in_memory = self.dtypes
            per_param = (
                f"{loaded['whisper/bytes_per_param']:g} bytes/param, {int(loaded['whisper/param_count'])} params"
                if "whisper/param_count" in loaded
                else "measured at load"
            )
            parts.append(
                f"whisper weights {loaded['whisper/weights_gb']:.4g} GB in {in_memory} (configured {configured}; "
                f"{per_param})"
            )
        ranks = "one rank" if trainer.world_size == 1 else f"worst of {trainer.world_size} ranks"
        for key, label in (
            ("gpu/peak_allocated_gb", "GPU peak allocated"),
            ("gpu/reward_peak_allocated_gb", "reward-phase peak"),
            ("cpu/peak_rss_gb", "CPU peak RSS"),
        ):
            if key in last:
                parts.append(f"{label} {last[key]:.4g} GB ({ranks})")
        rank_zero_info("Memory summary: " + ("; ".join(parts) or "no figures recorded"))
        for line in phase_summary_lines(self.history, self.phases, self.warmup_steps):
            rank_zero_info(line)
        if trainer.is_global_zero and self.history and self._rank_file:
            from nemo_ext.telemetry.plot import draw_step_anatomy

            path = os.path.join(os.path.dirname(self._rank_file), "step_anatomy.png")
            draw_step_anatomy(steady_state(self.history, self.warmup_steps), self.phases, path, ranks)
            rank_zero_info(f"Step anatomy: {path}")
            self._safe_log(trainer, lambda logger: _log_image(logger, "memory/step_anatomy", path))

    # ---- out of memory ----
    def on_exception(self, trainer, pl_module, exception):
        if not (self.oom_snapshot and oom_snapshot.is_out_of_memory(exception) and self._rank_file):
            return
        phase = pl_module.step_anatomy.phase_in_progress or "outside any phase"
        path = os.path.join(os.path.dirname(self._rank_file), f"oom_rank{trainer.global_rank}.pickle")
        oom_snapshot.write_snapshot(path, self._recording)
        what = "memory snapshot" if self._recording else "empty snapshot (no CUDA memory history was recorded)"
        print(
            f"[magpie] rank {trainer.global_rank}: CUDA out of memory in phase {phase} of step "
            f"{trainer.global_step + 1}; {what}: {path} (open it at https://pytorch.org/memory_viz)",
            flush=True,
        )

    def teardown(self, trainer, pl_module, stage):
        if self._recording:
            oom_snapshot.stop_recording()
            self._recording = False

    # ---- helpers ----
    @staticmethod
    def _process_figures(device) -> dict[str, float]:
        figures = {"cpu/rss_gb": process_rss_bytes() / GB, "cpu/peak_rss_gb": process_peak_rss_bytes() / GB}
        cuda = cuda_memory(device)
        if cuda is not None:
            free, total = torch.cuda.mem_get_info(device)
            figures.update(
                {
                    "gpu/allocated_gb": cuda.allocated / GB,
                    "gpu/reserved_gb": cuda.reserved / GB,
                    "gpu/peak_allocated_gb": cuda.peak_allocated / GB,
                    "gpu/device_used_gb": (total - free) / GB,
                }
            )
        return figures

    def _reduce_and_log(self, trainer, figures: dict[str, float], step: int, phase: str) -> dict[str, float]:
        where = {
            "phase": phase,
            "step": step,
            "rank": trainer.global_rank,
            "host": socket.gethostname(),
            "world_size": trainer.world_size,
            "cluster_environment": type(getattr(trainer.strategy, "cluster_environment", None)).__name__,
        }
        with open(self._rank_file, "a") as f:
            f.write(json.dumps({**where, **figures}) + "\n")
        reduced = reduce_across_ranks(trainer, figures)
        self._safe_log(trainer, lambda logger: logger.log_metrics(reduced, step=step))
        return reduced

    def _safe_log(self, trainer, call) -> None:
        # Telemetry must never end a training run: a failing logger is reported once and skipped.
        for logger in trainer.loggers:
            try:
                call(logger)
            except Exception as error:
                if not self._warned_logger_failure:
                    warnings.warn(
                        f"memory telemetry could not be logged to {type(logger).__name__}: {error}", stacklevel=2
                    )
                    self._warned_logger_failure = True


def _log_image(logger, key: str, path: str) -> None:
    from lightning.pytorch.loggers import WandbLogger

    if isinstance(logger, WandbLogger):
        logger.log_image(key=key, images=[path])
