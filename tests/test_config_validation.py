"""The +whisper shortcut, and bad input failing with a clear error before any model is built."""

import pytest
from magpie_testing import compose, run_recipe
from omegaconf import OmegaConf

from nemo_ext.errors import ConfigError
from nemo_ext.settings.fields import plain
from nemo_ext.settings.reward_models import NemoModelSettings
from nemo_ext.settings.whisper import WhisperSettings, fold_whisper_shortcut
from nemo_ext.stages import OFFLINE_PO_DATAGEN, OFFLINE_PO_DPO, ONLINE_PO


def test_plus_shortcut_lands_top_level_and_is_folded_into_model_whisper():
    cfg = compose("online_po", ["+whisper.dtype=bf16", "+whisper.batch_size=3"])
    assert cfg.whisper.dtype == "bf16" and cfg.model.whisper.dtype == "auto"
    folded = fold_whisper_shortcut(plain(cfg))
    assert "whisper" not in folded
    settings = WhisperSettings.parse(folded["model"]["whisper"])
    assert (settings.dtype, settings.batch_size, settings.pretrained) == ("bfloat16", 3, "openai/whisper-large-v3")


def test_plus_on_the_full_key_is_rejected_by_hydra_and_plain_override_works():
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="already at 'model.whisper.dtype'"):
        compose("online_po", ["+model.whisper.dtype=fp32"])
    assert compose("online_po", ["model.whisper.dtype=fp32"]).model.whisper.dtype == "fp32"


@pytest.mark.parametrize(
    ("node", "key", "bad"),
    [
        ({"dtype": "int3"}, "whisper.dtype", "'int3'"),
        ({"dtpe": "fp16"}, "whisper.dtpe", "'fp16'"),
        ({"batch_size": 0}, "whisper.batch_size", "0"),
        ({"attn_implementation": "x"}, "whisper.attn_implementation", "'x'"),
    ],
)
def test_shortcut_errors_name_the_key_the_user_typed(node, key, bad):
    cfg = {"whisper": node, "model": {"whisper": {"dtype": "auto"}}}
    with pytest.raises(ConfigError, match=f"^{key}={bad} is invalid; allowed: "):
        fold_whisper_shortcut(cfg)


def test_nemo_model_settings_accept_names_and_existing_nemo_files(tmp_path):
    assert not NemoModelSettings.parse(None, "model.nemo_asr", "nvidia/parakeet-ctc-0.6b").is_local_file
    path = tmp_path / "asr.nemo"
    path.write_bytes(b"x")
    assert NemoModelSettings.parse(OmegaConf.create({"pretrained": str(path)}), "k", "d").is_local_file
    with pytest.raises(ConfigError, match=r"model.nemo_asr.pretrained='/nope.nemo' is invalid"):
        NemoModelSettings.parse(OmegaConf.create({"pretrained": "/nope.nemo"}), "model.nemo_asr", "d")


@pytest.mark.parametrize(
    ("run", "config", "override", "message"),
    [
        (ONLINE_PO.run, "online_po_tiny", "model.reward_asr_model=wav2vec", "model.reward_asr_model='wav2vec'"),
        (ONLINE_PO.run, "online_po_tiny", "model.loss_type=ppo", "model.loss_type='ppo'"),
        (ONLINE_PO.run, "online_po_tiny", "init_from_ptl_ckpt=/missing.ckpt", "init_from_ptl_ckpt='/missing.ckpt'"),
        (ONLINE_PO.run, "online_po_tiny", "data.train_manifest=/missing.json", "data.train_manifest='/missing.json'"),
        (ONLINE_PO.run, "online_po_tiny", "+whisper.pretrained=/models/nope", "whisper.pretrained='/models/nope'"),
        (ONLINE_PO.run, "online_po_tiny", "+exp_manager.wandb_logger_kwargs.api_key=abc123", "api_key='<redacted>'"),
        (
            OFFLINE_PO_DATAGEN.run,
            "offline_po_datagen_tiny",
            "model.load_whisper_model=false",
            "model.load_whisper_model=False",
        ),
        (OFFLINE_PO_DPO.run, "offline_po_dpo_tiny", "model.dpo_loss_type=kto", "model.dpo_loss_type='kto'"),
    ],
)
def test_bad_input_fails_before_any_model_is_built(tiny_config, tmp_path, run, config, override, message):
    cfg = tiny_config(config, override)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")) as error:
        run(cfg)
    assert "allowed:" in str(error.value)
    assert not (tmp_path / "runs").exists()  # no trainer, no log dir, nothing written
    assert "abc123" not in str(error.value)


def test_missing_required_path_in_real_config():
    with pytest.raises(ConfigError, match=r"^init_from_ptl_ckpt='\?\?\?' is invalid; allowed: a path"):
        ONLINE_PO.run(compose("online_po"))


def test_cli_bad_dtype_exits_2_with_one_line_before_any_model(tiny, tmp_path):
    result = run_recipe(
        "online_po.py", "--config-name", "online_po_tiny", f"tiny_root={tiny.root}", "+whisper.dtype=int3", cwd=tmp_path
    )
    assert result.returncode == 2
    assert (
        "config error: whisper.dtype='int3' is invalid; allowed: auto, float16, fp16, bfloat16, bf16, float32, fp32"
    ) in result.stderr
    assert "restored" not in result.stdout + result.stderr  # no model was loaded


@pytest.mark.parametrize(
    ("override", "shown"), [("+whisper.dtype=bf16", "bfloat16"), ("model.whisper.dtype=fp32", "float32")]
)
def test_cli_dry_run_shows_the_dtype_that_will_load(tiny, tmp_path, override, shown):
    result = run_recipe(
        "online_po.py",
        "--config-name",
        "online_po_tiny",
        f"tiny_root={tiny.root}",
        "dry_run=true",
        override,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        f"[dry-run] online_po: config valid, input paths exist; whisper={tiny.whisper} dtype={shown}" in result.stdout
    )
    # A dry run writes nothing: no Hydra outputs/ or .hydra/ dumps, no run folder.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"reward_asr_model": "wav2vec"}, "model.reward_asr_model='wav2vec'"),
        ({"loss_type": "ppo"}, "model.loss_type='ppo'"),
    ],
)
def test_model_built_without_the_recipe_checks_its_choices_first(node, message):
    """The same check guards programmatic construction, before MagpieTTSModel builds anything."""
    from nemo_ext.models import MagpieTTSOnlinePO

    with pytest.raises(ConfigError, match=f"^{message} is invalid; allowed: "):
        MagpieTTSOnlinePO(cfg=OmegaConf.create(node))


def test_pesq_without_torchaudio_is_refused_before_any_model_is_built(tiny_config, tmp_path):
    """NeMo asserts HAVE_TORCHAUDIO after the policy and reward models are built; the CPU torch here ships no
    torchaudio (with it, the SQUIM model downloads from the internet, which no test may reach)."""
    import importlib.util

    from nemo_ext.errors import ConfigError

    assert importlib.util.find_spec("torchaudio") is None
    with pytest.raises(ConfigError, match=r"^model\.use_pesq=True is invalid; allowed: false \(.*torchaudio"):
        ONLINE_PO.parse(tiny_config("online_po_tiny", "model.use_pesq=true"))
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("stale", [False, True], ids=["not-built", "older-version"])
def test_tiny_fixtures_missing_or_stale_say_how_to_build_them(tmp_path, stale):
    """A tiny config on a folder without (current) fixtures names `tiny_root` and the command that builds it, not the
    first file it lacks; from the command line, exit 2 before any model is built."""
    import json

    root = tmp_path / "tiny"
    if stale:
        root.mkdir()
        (root / "fixtures.json").write_text(json.dumps({"version": 1}))
    result = run_recipe(
        "easy_online_po.py", "--config-name", "easy_online_po_tiny", f"tiny_root={root}", cwd=tmp_path, timeout=120
    )
    assert result.returncode == 2
    assert f"config error: tiny_root='{root}' is invalid" in result.stderr
    assert f"python scripts/make_tiny_fixtures.py --out {root}" in result.stderr
    assert ("built by version 1" in result.stderr) == stale
    assert not (tmp_path / "runs").exists()
