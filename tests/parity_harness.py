"""Running NeMo 3.0.0's PO classes next to ours: one config, one seed, the tiny fixtures, a real Lightning Trainer.

NeMo's classes load their reward models from the hub by hard-coded name. `redirect_nemo_hub` points those names
at the tiny local files through pytest's `monkeypatch`, so the redirection lives inside one test and is undone
after it (nothing is patched at import). Everything else is NeMo's own code."""

from __future__ import annotations

import copy
import glob
import hashlib
import json
import os
from dataclasses import dataclass, field

import torch

from nemo_ext.checkpoints import configs_in_checkpoints_allowed

HUB_WHISPER = "openai/whisper-large-v3"


def redirect_nemo_hub(monkeypatch, tiny) -> None:
    """NeMo's hub loaders return the tiny fixtures: parakeet -> tiny CTC .nemo, titanet -> tiny speaker .nemo,
    openai/whisper-large-v3 -> the tiny Whisper directory."""
    import nemo.collections.asr as nemo_asr
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    def restore(path):
        return classmethod(lambda cls, *args, **kwargs: nemo_asr.models.ASRModel.restore_from(path, map_location="cpu"))

    monkeypatch.setattr(nemo_asr.models.EncDecRNNTBPEModel, "from_pretrained", restore(tiny.nemo_asr))
    monkeypatch.setattr(nemo_asr.models.EncDecSpeakerLabelModel, "from_pretrained", restore(tiny.speaker_verification))

    for cls in (WhisperForConditionalGeneration, WhisperProcessor):
        original = cls.from_pretrained.__func__

        def local(klass, name, *args, _original=original, **kwargs):
            return _original(klass, tiny.whisper if name == HUB_WHISPER else name, *args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", classmethod(local))


@dataclass
class StepRecord:
    """What one training step produced."""

    logged: dict[str, float]  # train_* values the model logged
    lr: float
    item_metrics: list[dict]  # the per-item metrics JSON files of this step (GRPO), in file order


@dataclass
class ParityRun:
    steps: list[StepRecord] = field(default_factory=list)
    weights_sha256: str = ""  # over the policy's state_dict (reward and reference models excluded by both)
    state_keys: tuple[str, ...] = ()
    optimizer_parameters: tuple[str, ...] = ()  # names of the parameters in the optimizer
    model: object = None

    def series(self, key: str) -> list[float]:
        return [step.logged[key] for step in self.steps]


def _step_recorder(run: ParityRun, audio_dir):
    from lightning.pytorch import Callback

    class RecordSteps(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            logged = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train_")}
            files = sorted(glob.glob(os.path.join(audio_dir(trainer), "*_metrics.json")))
            metrics = [json.load(open(path)) for path in files]
            run.steps.append(StepRecord(logged, trainer.optimizers[0].param_groups[0]["lr"], metrics))

    return RecordSteps()


def assert_same_runs(ours: ParityRun, nemo: ParityRun, logged, metrics: bool = True) -> None:
    """Two steps each, equal in every `logged` value, learning rate, (with `metrics`) per-item metrics JSON,
    state-dict keys and weights."""
    assert len(ours.steps) == len(nemo.steps) == 2
    assert logged
    for step, (a, b) in enumerate(zip(ours.steps, nemo.steps), start=1):
        for key in logged:
            assert a.logged[key] == b.logged[key], f"step {step}: {key}"
        assert a.lr == b.lr, f"step {step}: learning rate"
        if metrics:
            assert a.item_metrics == b.item_metrics, f"step {step}: per-item metrics JSON"
            assert a.item_metrics, "no per-item metrics were written"
    assert ours.state_keys == nemo.state_keys
    assert ours.weights_sha256 == nemo.weights_sha256


def weights_sha256(state_dict: dict) -> str:
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        digest.update(key.encode())
        digest.update(state_dict[key].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _trainer(root: str, label: str, steps: int, callbacks: list, test: bool = False):
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger

    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=-1 if test else steps,
        max_epochs=-1 if not test else None,
        logger=CSVLogger(root, name=label, version=0),  # NeMo's PO classes write audio under logger.log_dir
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )


def build(model_class, cfg, model_cfg, trainer, plain_init: bool = False):
    """The model, initialized from `cfg.init_from_ptl_ckpt` as the recipes do it: with OmegaConf configs allowed
    in torch's safe loader (NeMo 3.0.0 cannot load a Lightning checkpoint under torch >= 2.6 otherwise).
    `plain_init`: the weights go in through torch's own `Module.load_state_dict` (non-strict), for a class whose
    `load_state_dict` cannot take the checkpoint (NeMo's EasyMagpieTTS GRPO with a reference policy)."""
    with configs_in_checkpoints_allowed():
        model = model_class(cfg=copy.deepcopy(model_cfg), trainer=trainer)
        if plain_init:
            checkpoint = torch.load(cfg.init_from_ptl_ckpt, map_location="cpu")
            torch.nn.Module.load_state_dict(model, checkpoint["state_dict"], strict=False)
        else:
            model.maybe_init_from_pretrained_checkpoint(cfg=copy.deepcopy(cfg))  # NeMo pops the key from its argument
    return model


def train(
    model_class,
    cfg,
    model_cfg,
    root: str,
    label: str,
    steps: int = 2,
    seed: int = 1234,
    ckpt_path: str | None = None,
    plain_init: bool = False,
) -> ParityRun:
    """Build `model_class` from `model_cfg`, initialize it from `cfg.init_from_ptl_ckpt`, seed, and train `steps`
    steps, recording each step's logged values, learning rate and per-item metrics."""
    import lightning.pytorch as pl

    run = ParityRun()
    recorder = _step_recorder(run, lambda trainer: os.path.join(trainer.logger.log_dir, "audios"))
    trainer = _trainer(root, label, steps, [recorder])
    model = build(model_class, cfg, model_cfg, trainer, plain_init=plain_init)
    # Building the models draws different amounts of random numbers (the classes load reward models in another
    # order); the comparison starts here.
    pl.seed_everything(seed, verbose=False)
    trainer.fit(model, ckpt_path=ckpt_path)
    state = model.state_dict()
    run.weights_sha256 = weights_sha256(state)
    run.state_keys = tuple(sorted(state))
    names = {id(p): name for name, p in model.named_parameters()}
    run.optimizer_parameters = tuple(
        sorted(names[id(p)] for group in trainer.optimizers[0].param_groups for p in group["params"])
    )
    run.model = model
    return run


def generate(model_class, cfg, model_cfg, root: str, label: str, seed: int, reseed_batches_of: int | None) -> dict:
    """DataGen's `trainer.test`; returns the metrics JSON of every item, by file name. `reseed_batches_of=B`:
    each batch of B items is reseeded with `seed` + its first item, what our `model.datagen_seed` does inside
    the model (NeMo's class has no such key, so a callback does it)."""
    import lightning.pytorch as pl
    from lightning.pytorch import Callback

    class ReseedPerBatch(Callback):
        def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
            torch.manual_seed(seed + batch_idx * batch_size)

    callbacks = [ReseedPerBatch()] if reseed_batches_of else []
    batch_size = reseed_batches_of
    trainer = _trainer(root, label, 0, callbacks, test=True)
    model = build(model_class, cfg, model_cfg, trainer)
    model.setup_test_data(model_cfg.test_ds)
    pl.seed_everything(seed, verbose=False)
    trainer.test(model)
    audio_dir = os.path.join(trainer.logger.log_dir, "audios")
    return {
        os.path.basename(path): json.load(open(path))
        for path in sorted(glob.glob(os.path.join(audio_dir, "*_metrics.json")))
    }
