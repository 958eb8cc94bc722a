"""Golden numbers, in torchtune's manner: the first steps of each tiny stage (seed 1234, the tiny default), pinned.
The parity tests show our classes compute what NeMo's compute; these catch a change that moves both sides (a NeMo,
torch or Lightning upgrade, a fixture change). After an intended change, re-pin with
`MAGPIE_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py` and say why in the commit."""

from __future__ import annotations

import json
import os

import pytest

from nemo_ext.stages import EASY_ONLINE_PO, OFFLINE_PO_DATAGEN, OFFLINE_PO_DPO, ONLINE_PO
from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = pytest.mark.e2e

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "tiny_runs.json")
# CPU float32 across machines and thread counts (reductions may reorder): a GRPO loss near 0 (zero-mean advantages)
# moved by 7e-9 between 1 and 2 threads; everything else agreed to 1e-4.
TOLERANCE = {"rel": 1e-4, "abs": 1e-7}
STEPS = 3


def logged(tmp_path, keys) -> dict[str, list[float]]:
    [run_file] = find_offline_runs(str(tmp_path / "runs"))
    run = read_offline_run(run_file)
    return {key: run.series(key) for key in keys}


def measure(name: str, tiny_config, tmp_path) -> dict:
    if name == "online_po":
        ONLINE_PO.run(tiny_config("online_po_tiny", f"trainer.max_steps={STEPS}"))
        return logged(tmp_path, ("train_loss", "train_kl_loss", "train_mean_reward", "learning/entropy"))
    if name == "easy_online_po":
        EASY_ONLINE_PO.run(tiny_config("easy_online_po_tiny", f"trainer.max_steps={STEPS}"))
        return logged(tmp_path, ("train_loss", "train_kl_loss", "train_mean_reward", "train_entropy"))
    if name == "offline_po_dpo":
        OFFLINE_PO_DPO.run(tiny_config("offline_po_dpo_tiny", f"trainer.max_steps={STEPS}", "trainer.max_epochs=null"))
        return logged(tmp_path, ("train_loss", "train_pref_loss", "learning/dpo_reward_margin"))
    result = OFFLINE_PO_DATAGEN.run(tiny_config("offline_po_datagen_tiny"))
    items = {}
    for path in result.metrics_files():
        metrics = json.load(open(path))
        items[str(metrics["item_id"])] = [metrics["cer_gt"], metrics["spk_similarity"], metrics["duration"]]
    return items


@pytest.mark.parametrize("name", ["online_po", "easy_online_po", "offline_po_datagen", "offline_po_dpo"])
def test_the_first_steps_of_each_tiny_stage_are_the_pinned_numbers(tiny_config, tmp_path, name):
    measured = measure(name, tiny_config, tmp_path)
    if os.environ.get("MAGPIE_UPDATE_GOLDEN"):
        golden = json.load(open(GOLDEN)) if os.path.isfile(GOLDEN) else {}
        golden[name] = measured
        with open(GOLDEN, "w") as f:
            json.dump(golden, f, indent=1, sort_keys=True)
        pytest.skip(f"re-pinned {name} in {GOLDEN}")
    expected = json.load(open(GOLDEN))[name]
    assert sorted(measured) == sorted(expected)
    for key, values in expected.items():
        assert len(measured[key]) == len(values), key
        assert measured[key] == pytest.approx(values, **TOLERANCE), key
