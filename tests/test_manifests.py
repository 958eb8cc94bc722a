"""Bad data and bad data settings end in one `config error:` line before any model is built (issue 13's table)."""

import json
import os

import pytest
from magpie_testing import run_recipe

from nemo_ext.errors import ConfigError
from nemo_ext.manifests import check_manifest
from nemo_ext.stages import OFFLINE_PO_DATAGEN, OFFLINE_PO_DPO, ONLINE_PO


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def write_lines(path, rows, raw_tail: str = ""):
    with open(path, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
        f.write(raw_tail)
    return str(path)


@pytest.fixture
def manifests(tiny, tmp_path):
    """Broken variants of the tiny manifests, each built from the real ones."""
    good, pairs = read_lines(tiny.manifest), read_lines(tiny.dpo_manifest)
    make = {
        "relative_audio": [dict(good[0], audio_filepath=os.path.basename(good[0]["audio_filepath"]))] + good[1:],
        "missing_audio": good[:2] + [dict(good[2], context_audio_filepath=str(tmp_path / "gone.wav"))] + good[3:],
        "empty": [],
        "odd_pairs": pairs[:3],
        "no_reward": [{k: v for k, v in row.items() if k != "reward"} for row in pairs],
        "rejected_reward_1": [dict(row, reward=1.0) for row in pairs],
        "pair_split_by_duration": pairs[:1] + [dict(pairs[1], duration=0.1)] + pairs[2:],
        "all_too_long": [dict(row, duration=99.0) for row in good],
    }
    paths = {name: write_lines(tmp_path / f"{name}.json", rows) for name, rows in make.items()}
    paths["malformed"] = write_lines(tmp_path / "malformed.json", good[:2], raw_tail='{"audio_filepath": "/x.wav",\n')
    return paths


CASES = [
    # (recipe, tiny config, manifest variant or None, extra override, the message, as a regex)
    (ONLINE_PO.run, "online_po_tiny", "relative_audio", None, r"line 1: 'utt0\.wav'"),
    (ONLINE_PO.run, "online_po_tiny", "missing_audio", None, r"existing files in 'context_audio_filepath' \(line 3"),
    (ONLINE_PO.run, "online_po_tiny", "malformed", None, r"line 3 is not JSON"),
    (OFFLINE_PO_DATAGEN.run, "offline_po_datagen_tiny", "empty", None, r"at least one line \(this one is empty\)"),
    (OFFLINE_PO_DPO.run, "offline_po_dpo_tiny", "empty", None, r"at least one line \(this one is empty\)"),
    (OFFLINE_PO_DPO.run, "offline_po_dpo_tiny", "odd_pairs", None, r"an even number of lines.* \(it has 3\)"),
    (OFFLINE_PO_DPO.run, "offline_po_dpo_tiny", "no_reward", None, r"line 1 lacks reward"),
    (OFFLINE_PO_DPO.run, "offline_po_dpo_tiny", "rejected_reward_1", None, r"reward < 1 on every rejected line"),
    (OFFLINE_PO_DPO.run, "offline_po_dpo_tiny", "pair_split_by_duration", None, r"line 2 is outside it"),
    (ONLINE_PO.run, "online_po_tiny", "all_too_long", None, r"all 4 lines are outside it"),
    (ONLINE_PO.run, "online_po_tiny", None, "data.batch_size=0", r"^data\.batch_size=0 is invalid"),
    (ONLINE_PO.run, "online_po_tiny", None, "trainer.precision=bf16-true", r"alignment_loss_scale=0.002 \(the CTC"),
    (ONLINE_PO.run, "online_po_tiny", None, "trainer.precision=16-true", r"^trainer\.precision='16-true'"),
    (OFFLINE_PO_DATAGEN.run, "offline_po_datagen_tiny", None, "data.min_duration=5", r"all 4 lines are outside"),
]


def manifest_key(config: str) -> str:
    return "data.test_manifest" if "datagen" in config else "data.train_manifest"


@pytest.mark.parametrize(("run", "config", "variant", "override", "message"), CASES)
def test_bad_data_fails_before_any_model_is_built(
    tiny_config, tmp_path, manifests, run, config, variant, override, message
):
    overrides = [override] if override else []
    if variant:
        overrides.append(f"{manifest_key(config)}={manifests[variant]}")
        if "dpo" in config:
            overrides.append(f"data.val_manifest={manifests[variant]}")
    cfg = tiny_config(config, *overrides)
    with pytest.raises(ConfigError, match=message) as error:
        run(cfg)
    assert "allowed:" in str(error.value)
    assert not (tmp_path / "runs").exists()  # no trainer, no run folder, nothing written


def test_recipe_exits_2_with_one_line_and_dry_run_refuses_too(tiny, tmp_path, manifests):
    """What the user and the SLURM launcher (which runs dry_run=true before queueing) see."""
    for extra in ([], ["dry_run=true"]):
        result = run_recipe(
            "offline_po_datagen.py",
            "--config-name",
            "offline_po_datagen_tiny",
            f"tiny_root={tiny.root}",
            f"exp_manager.exp_dir={tmp_path / 'runs'}",
            f"data.test_manifest={manifests['empty']}",
            *extra,
            cwd=tmp_path,
        )
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines() == [
            f"config error: data.test_manifest='{manifests['empty']}' is invalid; allowed: a manifest with at "
            "least one line (this one is empty)"
        ]
        assert not (tmp_path / "runs" / "tiny_offline_po_datagen").exists()


def test_lines_outside_the_duration_range_are_counted(tiny, tmp_path, tiny_config, capsys):
    rows = read_lines(tiny.manifest)
    path = write_lines(tmp_path / "m.json", [dict(rows[0], duration=30.0)] + rows[1:])
    assert ONLINE_PO.run(tiny_config("online_po_tiny", f"data.train_manifest={path}", "dry_run=true")) is None
    assert (
        "data.train_manifest: 1 of 4 lines last outside data.min_duration..data.max_duration" in capsys.readouterr().out
    )


def test_relative_paths_are_taken_below_audio_dir_where_the_dataset_does_so(tiny, tmp_path):
    rows = read_lines(tiny.dpo_manifest)
    relative = [dict(row, audio_filepath=os.path.relpath(row["audio_filepath"], tiny.audio_dir)) for row in rows]
    for row in relative:
        row.pop("context_audio_filepath")
    path = write_lines(tmp_path / "pairs.json", relative)
    summary = check_manifest("data.train_manifest", path, 0.2, 20.0, audio_dir=tiny.audio_dir, preference_pairs=True)
    assert (summary.lines, summary.kept) == (4, 4)
    with pytest.raises(ConfigError, match="absolute paths in 'audio_filepath'"):
        check_manifest("data.train_manifest", path, 0.2, 20.0, audio_dir=None, preference_pairs=True)


def test_a_large_manifest_is_checked_without_decoding_audio(tmp_path):
    """100,000 lines whose audio files are empty (not decodable): the check reads metadata only. Its speed is
    recorded by scripts/benchmark_manifest_check.py, not asserted here."""
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    row = {"audio_filepath": str(audio), "text": "x", "duration": 1.0, "context_audio_filepath": str(audio)}
    path = write_lines(tmp_path / "big.json", [row] * 100_000)
    summary = check_manifest("data.train_manifest", path, 0.2, 20.0)
    assert (summary.lines, summary.kept, summary.dropped) == (100_000, 100_000, 0)
