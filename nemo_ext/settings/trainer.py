"""`trainer`: lightning.pytorch.Trainer's arguments, checked against its signature (pinned in lightning_trainer.py)
and the ranges that matter, without constructing a Trainer or importing Lightning."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check
from nemo_ext.settings.lightning_trainer import ACCELERATOR_NAMES, STRATEGY_NAMES, TRAINER_ARGUMENTS

# Set by the recipe itself: NeMo's exp_manager adds the loggers and the checkpoint callback, the recipe its callbacks.
SET_BY_THE_RECIPE = {
    "logger": "exp_manager.create_tensorboard_logger / exp_manager.create_wandb_logger",
    "enable_checkpointing": "exp_manager.create_checkpoint_callback",
    "callbacks": "the recipe's callbacks (programmatic use: run_stage(..., callbacks=[...]))",
    "plugins": "the recipe (SLURM's environment plugin)",
}
ACCELERATORS = ("auto", "gpu", *ACCELERATOR_NAMES)
STRATEGIES = ("auto", *STRATEGY_NAMES)
DEVICE_SPELLINGS = "an int > 0, -1 (all GPUs), 'auto', a digit string, a GPU id list such as '0,1' or [0, 1]"
# Lightning precisions that compute in half precision throughout. On a CPU, fp16 kernels are missing for much of
# the model; bf16 runs, except MagpieTTS's CTC alignment loss ("ctc_loss_cpu" not implemented for 'BFloat16').
FP16_TRUE = ("16-true",)
BF16_TRUE = ("bf16-true",)
TRANSFORMER_ENGINE = ("transformer-engine", "transformer-engine-float16")
# fp16 autocast with a gradient scaler. Lightning runs it on a CPU as bf16-mixed, without the scaler (a warning only).
FP16_MIXED = ("16-mixed", "16")


def _token_accepts(token: str, value: object) -> bool:
    if token == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if token == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if token == "str":
        return isinstance(value, str)
    if token == "bool":
        return isinstance(value, bool)
    if token == "None":
        return value is None
    if token in ("list[int]", "list[str]"):
        item = int if token == "list[int]" else str
        return isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)
    if token == "dict":
        return isinstance(value, Mapping)
    if token == "object":
        return False  # a Python object: nothing a YAML value can be
    return repr(value) == token  # a Literal value


def _type_text(tokens: tuple[str, ...]) -> str:
    names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false", "None": "null"}
    shown = [names.get(t, t) for t in tokens if t != "object"]
    return ", ".join(shown) if shown else "a Python object (not settable from a YAML config)"


def _or_null(key: str) -> str:
    return "null or " if "None" in TRAINER_ARGUMENTS[key.removeprefix("trainer.")] else ""


def _steps_budget(key, value):
    if value != -1 and value < 1:
        raise ConfigError(key, value, "-1 (no limit) or an integer >= 1")


def _epochs_budget(key, value):
    if value is not None and value != -1 and value < 1:
        raise ConfigError(key, value, "null, -1 (no limit) or an integer >= 1")


def _fraction_or_count(key, value, count_minimum: int, fraction_above_zero: bool):
    if value is None:
        return
    if isinstance(value, float):
        if not (0.0 < value <= 1.0 if fraction_above_zero else 0.0 <= value <= 1.0):
            span = "(0, 1]" if fraction_above_zero else "[0, 1]"
            raise ConfigError(key, value, f"null, an integer >= {count_minimum} (batches) or a fraction in {span}")
    elif value < count_minimum:
        span = "(0, 1]" if fraction_above_zero else "[0, 1]"
        raise ConfigError(key, value, f"null, an integer >= {count_minimum} (batches) or a fraction in {span}")


def _at_least(minimum):
    def rule(key, value):
        if value is not None and value < minimum:
            raise ConfigError(key, value, f"{_or_null(key)}an integer >= {minimum}")

    return rule


def _choice_or_null(options):
    def rule(key, value):
        if value is not None and value not in options:
            raise ConfigError(key, value, "null, " + ", ".join(options))

    return rule


def _gradient_clip(key, value):
    if value is not None and value < 0:
        raise ConfigError(key, value, "null or a number >= 0")


# Ranges beyond the type, for the arguments whose bad values fail late or silently change the run.
RANGES = {
    "max_steps": _steps_budget,
    "max_epochs": _epochs_budget,
    "min_steps": _at_least(0),
    "min_epochs": _at_least(0),
    "num_nodes": _at_least(1),
    "log_every_n_steps": _at_least(1),
    "accumulate_grad_batches": _at_least(1),
    "check_val_every_n_epoch": _at_least(1),
    "num_sanity_val_steps": _at_least(-1),
    "reload_dataloaders_every_n_epochs": _at_least(0),
    "gradient_clip_val": _gradient_clip,
    "gradient_clip_algorithm": _choice_or_null(("norm", "value")),
    "val_check_interval": lambda k, v: _fraction_or_count(k, v, 1, fraction_above_zero=True),
    "limit_train_batches": lambda k, v: _fraction_or_count(k, v, 0, fraction_above_zero=False),
    "limit_val_batches": lambda k, v: _fraction_or_count(k, v, 0, fraction_above_zero=False),
    "limit_test_batches": lambda k, v: _fraction_or_count(k, v, 0, fraction_above_zero=False),
    "limit_predict_batches": lambda k, v: _fraction_or_count(k, v, 0, fraction_above_zero=False),
    "overfit_batches": lambda k, v: _fraction_or_count(k, v, 0, fraction_above_zero=False),
    "fast_dev_run": lambda k, v: _at_least(0)(k, v) if not isinstance(v, bool) else None,
}


def devices_spelling(devices) -> int | str | list:
    """Check a `trainer.devices` spelling Lightning accepts; the count itself (which needs the GPUs of the node the
    job runs on, not of the login node) is taken when the trainer is built (recipes/devices.py)."""
    if isinstance(devices, bool):
        raise ConfigError("trainer.devices", devices, DEVICE_SPELLINGS)
    if devices is None or devices in ("auto", -1, "-1"):
        return devices
    if isinstance(devices, list):
        if not devices or any(isinstance(d, bool) or not isinstance(d, int) or d < 0 for d in devices):
            raise ConfigError("trainer.devices", devices, DEVICE_SPELLINGS)
        return devices
    if isinstance(devices, int):
        if devices < 1:
            raise ConfigError("trainer.devices", devices, DEVICE_SPELLINGS)
        return devices
    if isinstance(devices, str):
        text = devices.strip()
        parts = [part.strip() for part in text.split(",") if part.strip()]
        if "," in text and parts and all(p.isdigit() for p in parts):
            return devices
        if text.isdigit() and int(text) >= 1:
            return devices
    raise ConfigError("trainer.devices", devices, DEVICE_SPELLINGS)


@dataclass(frozen=True)
class TrainerSettings:
    arguments: Mapping[str, object]  # read-only: the Trainer's keyword arguments as configured

    @property
    def accelerator(self) -> str:
        return str(self.arguments.get("accelerator", "auto"))

    @property
    def precision(self) -> str:
        return str(self.arguments.get("precision", "32-true"))

    @classmethod
    def parse(cls, node: Mapping | None) -> TrainerSettings:
        raw = check.mapping("trainer", node)
        check.refuse_unknown_keys(raw, TRAINER_ARGUMENTS, "trainer.", "of lightning.pytorch.Trainer")
        for key, value in raw.items():
            if key in SET_BY_THE_RECIPE and value not in (None, False):
                raise ConfigError(f"trainer.{key}", value, f"unset: the recipe sets it ({SET_BY_THE_RECIPE[key]})")
            tokens = TRAINER_ARGUMENTS[key]
            if not any(_token_accepts(token, value) for token in tokens):
                raise ConfigError(f"trainer.{key}", value, _type_text(tokens))
            if key in RANGES:
                RANGES[key](f"trainer.{key}", value)
        if "accelerator" in raw:
            check.choice("trainer.accelerator", raw["accelerator"], ACCELERATORS)
        if "strategy" in raw:
            check.choice("trainer.strategy", raw["strategy"], STRATEGIES)
        devices_spelling(raw.get("devices", "auto"))
        return cls(arguments=types.MappingProxyType(dict(raw)))

    def runs_on_cpu(self) -> bool:
        """Whether this trainer computes on the CPU here: accelerator cpu, or auto without a CUDA device (torch is
        imported only to answer the second case)."""
        if self.accelerator == "cpu":
            return True
        if self.accelerator != "auto":
            return False
        import torch

        return not torch.cuda.is_available()

    def check_precision_runs(self, alignment_loss_scale) -> None:
        """Refuse a precision that fails on this accelerator. `alignment_loss_scale()`: the architecture's CTC
        alignment loss weight (called only for bf16-true on a CPU: it may read the checkpoint)."""
        precision = self.precision
        if precision in TRANSFORMER_ENGINE:
            import importlib.util

            if importlib.util.find_spec("transformer_engine") is None:  # Lightning fails only once fit() starts
                raise ConfigError(
                    "trainer.precision",
                    precision,
                    "32-true, 16-mixed, bf16-mixed, bf16-true or 16-true "
                    "(transformer-engine precisions need NVIDIA Transformer Engine, not installed here)",
                )
        if precision not in FP16_TRUE + BF16_TRUE + FP16_MIXED or not self.runs_on_cpu():
            return
        where = f"on the CPU (trainer.accelerator={self.accelerator}; no CUDA device here)"
        if precision in FP16_MIXED:
            raise ConfigError(
                "trainer.precision",
                precision,
                f"32-true, bf16-mixed or bf16-true {where}: Lightning would run 16-mixed on the CPU as bf16-mixed, "
                "without the gradient scaler fp16 needs",
            )
        if precision in FP16_TRUE:
            raise ConfigError("trainer.precision", precision, f"32-true, bf16-mixed or bf16-true {where}")
        scale = float(alignment_loss_scale() or 0.0)
        if scale > 0:
            raise ConfigError(
                "trainer.precision",
                precision,
                f"32-true or bf16-mixed {where}: model.alignment_loss_scale={scale:g} (the CTC "
                "alignment loss has no bf16 CPU kernel); bf16-true needs +model.alignment_loss_scale=0.0",
            )
