"""Online preference optimization (GRPO) of EasyMagpieTTS: `trainer.fit` of EasyMagpieTTSOnlinePO."""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from nemo_ext.config import GRPO_LOSS_TYPES, REWARD_ASR_MODELS, require_choice
from nemo_ext.errors import ConfigError
from nemo_ext.model_keys import check_model_keys
from nemo_ext.recipes.online_po import DATASET, MANIFESTS, REQUIRED_PATHS, OnlinePORun
from nemo_ext.recipes.setup import build_model_config, dry_run_done, prepare_config, train_and_validation_datasets
from nemo_ext.recipes.stage_run import StageRun
from nemo_ext.telemetry import telemetry_callbacks

STAGE = "easy_online_po"


def validated_config(cfg: DictConfig) -> DictConfig:
    """The checks that need no model (see prepare_config), GRPO's own values included."""
    cfg = prepare_config(cfg, REQUIRED_PATHS, manifests=MANIFESTS)
    require_choice(cfg, "model.reward_asr_model", "nemo", REWARD_ASR_MODELS)
    require_choice(cfg, "model.loss_type", "grpo", GRPO_LOSS_TYPES)
    check_model_keys(cfg.model, STAGE)
    if cfg.trainer.get("gradient_clip_val") not in (None, 0, 0.0):
        # Lightning refuses it only once fit() starts, after every model is built.
        raise ConfigError(
            "trainer.gradient_clip_val",
            cfg.trainer.gradient_clip_val,
            "null (this stage optimizes manually, as NeMo's; clip with model.max_grad_norm)",
        )
    if cfg.model.get("use_utmos", False):
        from nemo_ext.models.easy_online_po import refuse_utmos_without_utmosv2

        refuse_utmos_without_utmosv2(cfg.model)
    return cfg


def _datasets(cfg: DictConfig) -> dict:
    # The MagpieTTS dataset and manifests, but EasyMagpieTTS reads the dataset under `dataset` (not `datasets`).
    datasets = train_and_validation_datasets(cfg, DATASET)
    for node in datasets.values():
        node["dataset"] = node.pop("datasets")
    return datasets


def model_config(cfg: DictConfig) -> DictConfig:
    """The config the model is built from (a validated `cfg`): the checkpoint's architecture, this stage's
    `model` node, the datasets, and the reference checkpoint (the one the policy starts from)."""
    model_cfg = build_model_config(cfg, _datasets(cfg))
    with open_dict(model_cfg):
        model_cfg.reference_model_ckpt_path = cfg.init_from_ptl_ckpt
    return model_cfg


def run_easy_online_po(cfg: DictConfig, callbacks: list | None = None) -> OnlinePORun | None:
    """Run GRPO on EasyMagpieTTS; `callbacks` are extra Lightning callbacks. None after a dry run."""
    cfg = validated_config(cfg)
    if dry_run_done(cfg, STAGE):
        return None
    model_cfg = model_config(cfg)

    from nemo_ext.models import EasyMagpieTTSOnlinePO

    callbacks = telemetry_callbacks(cfg) + list(callbacks or [])
    with StageRun(cfg, STAGE) as run:
        model, trainer = run.fit(EasyMagpieTTSOnlinePO, model_cfg, callbacks)
    return OnlinePORun(model=model, trainer=trainer, log_dir=trainer.log_dir)
