"""Offline PO end to end on the tiny fixtures: real DataGen output -> pairs -> DPO, in process and through
scripts/offline_po.sh."""

import glob
import json
import os
import subprocess
import sys

import pytest
import torch
from magpie_testing import REPO, compose

from nemo_ext.stages import OFFLINE_PO_DATAGEN, OFFLINE_PO_DPO, OFFLINE_PO_PAIRS

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def datagen_run(tiny, tmp_path_factory):
    """A real DataGen run over the tiny texts, each repeated twice (groups of 2)."""
    from magpie_testing import compose as compose_config

    root = tmp_path_factory.mktemp("datagen")
    texts = root / "texts_x2.json"
    with open(tiny.manifest) as source:
        lines = [line for line in source if line.strip()]
    texts.write_text("".join(line for line in lines for _ in range(2)))
    cfg = compose_config(
        "offline_po_datagen_tiny",
        [f"tiny_root={tiny.root}", f"exp_manager.exp_dir={root / 'runs'}", f"data.test_manifest={texts}"],
    )
    run = OFFLINE_PO_DATAGEN.run(cfg)
    return os.path.dirname(run.audio_dir)


def test_datagen_writes_each_samples_manifest_line_into_its_metrics(datagen_run):
    ids = sorted(
        json.load(open(p))["item_id"] for p in glob.glob(os.path.join(datagen_run, "audios", "*_metrics.json"))
    )
    assert ids == list(range(8))
    with open(os.path.join(datagen_run, "state", "items.json")) as f:
        assert [json.loads(line)["magpie_item_id"] for line in f] == list(range(8))
    [codes] = glob.glob(os.path.join(datagen_run, "audios", "predicted_audioRank0_0_codes.pt"))
    assert torch.load(codes).dtype == torch.int16  # as NeMo's DataGen saves them: what broke NeMo's DPO


@pytest.mark.parametrize("use_codes", [True, False])
def test_dpo_trains_on_pairs_made_from_real_datagen_output(datagen_run, tiny, tmp_path, use_codes):
    pairs = OFFLINE_PO_PAIRS.run(
        compose(
            "offline_po_pairs_tiny",
            [f"datagen_run={datagen_run}", f"output_dir={tmp_path / 'pairs'}", f"use_codes={use_codes}"],
        )
    )
    assert pairs.train_pairs >= 2 and pairs.val_pairs == 1
    with open(pairs.train_manifest) as f:
        rows = [json.loads(line) for line in f]
    assert all(("target_audio_codes_path" in row) == use_codes for row in rows)

    # One epoch over every train pair and a validation pass over every validation pair: each goes through
    # NeMo's MagpieTTSDatasetDPO, which asserts chosen reward 1 and rejected reward < 1.
    cfg = compose(
        "offline_po_dpo_tiny",
        [
            f"tiny_root={tiny.root}",
            f"exp_manager.exp_dir={tmp_path / 'runs'}",
            f"data.train_manifest={pairs.train_manifest}",
            f"data.val_manifest={pairs.val_manifest}",
            "trainer.max_steps=-1",
            "trainer.max_epochs=1",
            "trainer.limit_val_batches=1.0",
        ],
    )
    run = OFFLINE_PO_DPO.run(cfg)
    assert run.trainer.global_step == -(-pairs.train_pairs // cfg.data.batch_size)
    assert torch.isfinite(run.trainer.logged_metrics["train_loss"])
    reference = torch.load(tiny.reference_checkpoint, weights_only=False)["state_dict"]
    trained = run.model.state_dict()
    assert any(not torch.equal(reference[k], trained[k]) for k in reference if k.startswith("decoder."))


@pytest.mark.slow  # three stages in subprocesses
def test_offline_po_script_goes_from_texts_to_a_dpo_checkpoint(tiny, tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "offline_po.sh"), "--tiny"],
        cwd=tmp_path,
        env={
            **os.environ,
            "MAGPIE_PYTHON": sys.executable,  # this session's environment, wherever the checkout is
            "MAGPIE_TINY_ROOT": tiny.root,
            "MAGPIE_EXP_DIR": str(tmp_path / "runs"),
        },
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [done] = [line for line in result.stderr.splitlines() if line.startswith("[offline_po] done:")]
    dpo_run = done.split("DPO ")[1].split(" (model")[0]
    assert dpo_run.startswith(str(tmp_path / "runs" / "tiny_offline_po_dpo"))
    state = json.load(open(os.path.join(dpo_run, "state", "run_state.json")))
    assert (state["status"], state["global_step"]) == ("finished", 1)
    # The trained model: a checkpoint of the last step (NeMo's callback saves none for a 1-step run).
    assert glob.glob(os.path.join(dpo_run, "checkpoints", "final-step=1.ckpt"))
    assert "[magpie] pair yield: 4 groups" in result.stdout
