"""Every block of every stage's config is parsed once, at the edge, into one typed settings object: each bad value,
bad type and unknown key is one `config error:` line (KEY=VALUE is invalid; allowed: ...), exit 2, before any model
is built and before torch, Lightning or NeMo are imported, and nothing is written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from magpie_testing import REPO, compose, run_recipe

from nemo_ext.errors import ConfigError
from nemo_ext.stages import STAGES

MODEL_STAGES = ("online_po", "easy_online_po", "offline_po_datagen", "offline_po_dpo")
TELEMETRY_STAGES = ("online_po", "easy_online_po", "offline_po_datagen")
GRPO_STAGES = ("online_po", "easy_online_po")
DECODING_STAGES = ("online_po", "easy_online_po", "offline_po_datagen")

# Values accepted by `dry_run=true` before the settings object existed (issue 19): (override, stages, message start).
ACCEPTED_BEFORE = [
    (
        "telemetry.log_every_n_steps=0",
        TELEMETRY_STAGES,
        "telemetry.log_every_n_steps=0 is invalid; allowed: an integer >= 1",
    ),
    ("telemetry.enabled=maybe", TELEMETRY_STAGES, "telemetry.enabled='maybe' is invalid; allowed: true or false"),
    ("telemetry.oom_snapshot=yes", TELEMETRY_STAGES, "telemetry.oom_snapshot='yes' is invalid; allowed: true or false"),
    ("+telemetry.foo=1", TELEMETRY_STAGES, "telemetry.foo=1 is invalid; allowed: a key of the telemetry block: "),
    ("+data.foo=1", MODEL_STAGES, "data.foo=1 is invalid; allowed: a key of the data block: "),
    ("+trainer.foo=1", MODEL_STAGES, "trainer.foo=1 is invalid; allowed: a key of lightning.pytorch.Trainer: "),
    ("+exp_manager.foo=1", MODEL_STAGES, "exp_manager.foo=1 is invalid; allowed: a key of NeMo's ExpManagerConfig: "),
    (
        "trainer.max_steps=-5",
        MODEL_STAGES,
        "trainer.max_steps=-5 is invalid; allowed: -1 (no limit) or an integer >= 1",
    ),
    ("trainer.max_steps=abc", MODEL_STAGES, "trainer.max_steps='abc' is invalid; allowed: an integer"),
    (
        "exp_manager.checkpoint_callback_params.every_n_train_steps=0",
        MODEL_STAGES,
        "exp_manager.checkpoint_callback_params.every_n_train_steps=0 is invalid; allowed: null or an integer >= 1",
    ),
    (
        "model.n_generations_per_item=1",
        GRPO_STAGES,
        "model.n_generations_per_item=1 is invalid; allowed: an integer >= 2",
    ),
    (
        "model.n_generations_per_item=0",
        GRPO_STAGES,
        "model.n_generations_per_item=0 is invalid; allowed: an integer >= 2",
    ),
    ("model.grpo_beta=-1", GRPO_STAGES, "model.grpo_beta=-1 is invalid; allowed: a number >= 0"),
    ("model.max_decoder_steps=0", DECODING_STAGES, "model.max_decoder_steps=0 is invalid; allowed: an integer >= 1"),
]
CASES = [(override, stage, message) for override, stages, message in ACCEPTED_BEFORE for stage in stages]


@pytest.mark.parametrize(("override", "stage", "message"), CASES, ids=[f"{s}:{o}" for o, s, _ in CASES])
def test_each_value_dry_run_accepted_is_one_config_error_line(tiny, tmp_path, override, stage, message):
    result = run_recipe(
        f"{stage}.py",
        "--config-name",
        f"{stage}_tiny",
        f"tiny_root={tiny.root}",
        f"exp_manager.exp_dir={tmp_path / 'runs'}",
        "dry_run=true",
        override,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr  # one line
    assert result.stderr.startswith(f"config error: {message}"), result.stderr
    assert "[dry-run]" not in result.stdout
    assert list(tmp_path.iterdir()) == []  # no run folder, no Hydra output, nothing


# Per stage and block: a bad value, a bad type, an unknown key. (stage, block, override, message start)
BLOCK_CASES = []
for stage in MODEL_STAGES:
    BLOCK_CASES += [
        (stage, "run", "resume=7", "resume=7 is invalid; allowed: null or last or a run folder"),
        (stage, "run", "seed=-1", "seed=-1 is invalid; allowed: null or an integer >= 0"),
        (stage, "run", "+nme=x", "nme='x' is invalid; allowed: a key of the "),
        (stage, "data", "data.batch_size=0", "data.batch_size=0 is invalid; allowed: an integer >= 1"),
        (stage, "data", "data.num_workers=two", "data.num_workers='two' is invalid; allowed: an integer >= 0"),
        (stage, "data", "+data.batchsize=4", "data.batchsize=4 is invalid; allowed: a key of the data block: "),
        (stage, "trainer", "trainer.precision=12-true", "trainer.precision='12-true' is invalid; allowed: 64, 32, 16"),
        (stage, "trainer", "trainer.num_nodes=0", "trainer.num_nodes=0 is invalid; allowed: an integer >= 1"),
        (stage, "trainer", "+trainer.max_step=3", "trainer.max_step=3 is invalid; allowed: a key of lightning"),
        (stage, "trainer", "trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0 is invalid; allowed: null or"),
        (stage, "trainer", "+trainer.logger=true", "trainer.logger=True is invalid; allowed: unset: the recipe sets"),
        (
            stage,
            "exp_manager",
            "exp_manager.create_wandb_logger=sometimes",
            "exp_manager.create_wandb_logger='sometimes' is invalid; allowed: a value of type Optional[bool]",
        ),
        (
            stage,
            "exp_manager",
            "exp_manager.checkpoint_callback_params.save_top_k=-2",
            "exp_manager.checkpoint_callback_params.save_top_k=-2 is invalid; allowed: an integer >= -1",
        ),
        (
            stage,
            "exp_manager",
            "+exp_manager.checkpoint_callback_params.every_n_train_step=5",
            "exp_manager.checkpoint_callback_params.every_n_train_step=5 is invalid; allowed: a key of NeMo's",
        ),
        (stage, "model", "model.whisper.dtype=int3", "model.whisper.dtype='int3' is invalid; allowed: auto, float16"),
    ]
for stage in GRPO_STAGES:
    BLOCK_CASES.append(
        (stage, "telemetry", "telemetry.no_signal_warning_steps=0", "telemetry.no_signal_warning_steps=0 is invalid")
    )
for stage in MODEL_STAGES:
    BLOCK_CASES += [
        (
            stage,
            "faults",
            "faults.collective_timeout_s=0",
            "faults.collective_timeout_s=0 is invalid; allowed: a number >= 1",
        ),
        (
            stage,
            "faults",
            "faults.collective_timeout_s=20 faults.heartbeat_every_s=30",
            "faults.heartbeat_every_s=30.0 is invalid; allowed: a number below faults.collective_timeout_s (20.0)",
        ),
        (
            stage,
            "faults",
            "+faults.timeout=5",
            "faults.timeout=5 is invalid; allowed: a key of the faults block: collective_timeout_s, heartbeat_every_s",
        ),
    ]
BLOCK_CASES.append(
    (
        "offline_po_datagen",
        "telemetry",
        "+telemetry.no_signal_warning_steps=5",
        "telemetry.no_signal_warning_steps=5 is invalid; allowed: a key of the telemetry block: enabled, ",
    )
)
for stage in GRPO_STAGES:
    BLOCK_CASES += [
        (
            stage,
            "model",
            "model.inference_temperature=0",
            "model.inference_temperature=0 is invalid; allowed: a number > 0",
        ),
        (stage, "model", "model.loss_type=ppo", "model.loss_type='ppo' is invalid; allowed: grpo, dr_grpo"),
        (
            stage,
            "model",
            "model.cer_reward_weight=-0.5",
            "model.cer_reward_weight=-0.5 is invalid; allowed: a number >= 0",
        ),
        (
            stage,
            "model",
            "model.cer_reward_weight=0 model.ssim_reward_weight=0",
            "model.cer_reward_weight=0.0 is invalid; allowed: a weight > 0 on at least one of",
        ),
        (stage, "model", "model.mean_cer_dataset=1.0", "model.mean_cer_dataset=1.0 is invalid; allowed: a number < 1"),
        (
            stage,
            "model",
            "model.best_ssim_achievable=0.5",
            "model.best_ssim_achievable=0.5 is invalid; allowed: a number >",
        ),
        (
            stage,
            "model",
            "model.worst_cer_threshold=1.5",
            "model.worst_cer_threshold=1.5 is invalid; allowed: a number in [0, 1]",
        ),
        (
            stage,
            "model",
            "model.scale_rewards=often",
            "model.scale_rewards='often' is invalid; allowed: group, batch, none",
        ),
    ]
BLOCK_CASES += [
    (
        "online_po",
        "model",
        "model.pesq_reward_weight=0.2",
        "model.pesq_reward_weight=0.2 is invalid; allowed: 0 unless",
    ),
    (
        "easy_online_po",
        "model",
        "model.utmos_reward_weight=0.2",
        "model.utmos_reward_weight=0.2 is invalid; allowed: 0",
    ),
    (
        "easy_online_po",
        "model",
        "model.max_valid_codes_len=3",
        "model.max_valid_codes_len=3 is invalid; allowed: null or",
    ),
    ("offline_po_dpo", "model", "model.dpo_beta=0", "model.dpo_beta=0 is invalid; allowed: a number > 0"),
    ("offline_po_dpo", "model", "model.dpo_loss_type=kto", "model.dpo_loss_type='kto' is invalid; allowed: dpo, ipo"),
    (
        "offline_po_dpo",
        "model",
        "model.dpo_pref_loss_weight=0",
        "model.dpo_pref_loss_weight=0.0 is invalid; allowed: a weight > 0 here or in model.dpo_sft_loss_weight",
    ),
    ("offline_po_datagen", "model", "model.datagen_seed=-3", "model.datagen_seed=-3 is invalid; allowed: null or an"),
    (
        "offline_po_datagen",
        "model",
        "model.inference_topk=0",
        "model.inference_topk=0 is invalid; allowed: an integer >= 1",
    ),
    ("offline_po_pairs", "run", "+exp_dir=x", "exp_dir='x' is invalid; allowed: a key of the offline_po_pairs stage: "),
    ("offline_po_pairs", "run", "use_codes=maybe", "use_codes='maybe' is invalid; allowed: true or false"),
    ("offline_po_pairs", "pairs", "pairs.group_size=1", "pairs.group_size=1 is invalid; allowed: an integer >= 2"),
    ("offline_po_pairs", "pairs", "pairs.cer_threshold=low", "pairs.cer_threshold='low' is invalid; allowed: a number"),
    (
        "offline_po_pairs",
        "pairs",
        "+pairs.groupsize=6",
        "pairs.groupsize=6 is invalid; allowed: a key of the pairs block",
    ),
    ("offline_po_pairs", "wandb", "wandb.enabled=1", "wandb.enabled=1 is invalid; allowed: true or false"),
    ("offline_po_pairs", "wandb", "+wandb.entity=me", "wandb.entity='me' is invalid; allowed: a key of the pair stage"),
]


def _config(tiny_config, stage: str, override: str, datagen_run):
    overrides = override.split(" ")
    if stage == "offline_po_pairs":
        return compose("offline_po_pairs_tiny", [f"datagen_run={datagen_run}", *overrides])
    return tiny_config(f"{stage}_tiny", *overrides)


@pytest.mark.parametrize(
    ("stage", "block", "override", "message"), BLOCK_CASES, ids=[f"{c[0]}:{c[2]}" for c in BLOCK_CASES]
)
def test_every_block_refuses_bad_values_types_and_keys_before_anything_is_written(
    tiny_config, tmp_path, stage, block, override, message
):
    datagen_run = tmp_path / "datagen_run"
    datagen_run.mkdir()
    with pytest.raises(ConfigError) as refused:
        STAGES[stage].parse(_config(tiny_config, stage, override, datagen_run))
    assert str(refused.value).startswith(message), str(refused.value)
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["datagen_run"]  # no runs/, nothing written
    assert list(datagen_run.iterdir()) == []


def test_every_stage_and_block_is_covered():
    covered = {(stage, block) for stage, block, _, _ in BLOCK_CASES}
    for stage in MODEL_STAGES:
        blocks = {"run", "data", "trainer", "exp_manager", "faults", "model"} | (
            {"telemetry"} if stage in TELEMETRY_STAGES else set()
        )
        assert {(stage, block) for block in blocks} <= covered, stage
    assert {("offline_po_pairs", block) for block in ("run", "pairs", "wandb")} <= covered


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_valid_config_is_parsed_without_importing_torch_lightning_or_nemo(tiny, tmp_path, stage):
    """What makes a config error cost well under a second: the whole parse (every block, paths, manifests) runs
    before the heavy imports. A fresh interpreter parses the stage's tiny config, then lists what it imported."""
    name = f"{stage}_tiny"
    overrides = [f"tiny_root={tiny.root}"]
    if stage == "offline_po_pairs":
        datagen_run = tmp_path / "datagen_run"
        datagen_run.mkdir()
        overrides = [f"datagen_run={datagen_run}"]
    script = (
        "import sys\n"
        "from hydra import compose, initialize_config_dir\n"
        "from nemo_ext.stages import STAGES\n"
        f"with initialize_config_dir(config_dir={str(REPO / 'conf')!r}, version_base='1.3'):\n"
        f"    cfg = compose({name!r}, {overrides!r})\n"
        f"settings = STAGES[{stage!r}].parse(cfg)\n"
        "heavy = sorted(m for m in ('torch', 'lightning', 'nemo', 'transformers') if m in sys.modules)\n"
        "print(type(settings.algorithm).__name__, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("[]"), result.stdout


def test_settings_are_frozen_and_the_config_read_only(tiny_config):
    import dataclasses

    settings = STAGES["online_po"].parse(tiny_config("online_po_tiny"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.algorithm.grpo_beta = 1.0
    with pytest.raises(Exception, match="read-only"):
        settings.config.model.grpo_beta = 1.0
    with pytest.raises(TypeError):
        settings.trainer.arguments["max_steps"] = 9


@pytest.mark.e2e
@pytest.mark.parametrize("stage", ["online_po", "offline_po_datagen"])
def test_each_config_node_is_parsed_once_per_run(tiny_config, monkeypatch, stage):
    """A whole run (the recipe's parse, the trainer, the model with its reward models and reference policy, the
    callbacks) parses each block once: the models and callbacks read the settings object."""
    from collections import Counter

    from nemo_ext.settings import (
        data,
        exp_manager,
        faults,
        grpo,
        offline_po,
        reward_models,
        run,
        telemetry,
        trainer,
        whisper,
    )

    calls = Counter()
    parsers = [
        whisper.WhisperSettings,
        reward_models.NemoModelSettings,
        data.DataSettings,
        telemetry.TelemetrySettings,
        trainer.TrainerSettings,
        exp_manager.ExpManagerSettings,
        faults.FaultSettings,
        run.RunSettings,
        grpo.GRPOSettings,
        offline_po.DataGenSettings,
    ]
    for cls in parsers:
        original = cls.parse.__func__

        def counted(klass, *args, _original=original, _name=cls.__name__, **kwargs):
            calls[_name] += 1
            return _original(klass, *args, **kwargs)

        monkeypatch.setattr(cls, "parse", classmethod(counted))
    result = STAGES[stage].run(tiny_config(f"{stage}_tiny", "trainer.max_steps=1"))
    assert result.model is not None
    algorithm = "GRPOSettings" if stage == "online_po" else "DataGenSettings"
    assert calls == Counter(
        {
            "WhisperSettings": 1,
            "NemoModelSettings": 2,  # model.nemo_asr and model.speaker_verification, once each
            "DataSettings": 1,
            "TelemetrySettings": 1,
            "TrainerSettings": 1,
            "ExpManagerSettings": 1,
            "FaultSettings": 1,
            "RunSettings": 1,
            algorithm: 1,
        }
    )
