"""`trainer.devices`: every spelling Lightning accepts gives the world size Lightning will use, so a multi-process
run gets the strategy MagpieTTS PO needs (plain DDP fails at step 2 on parameters without gradients)."""

from __future__ import annotations

import glob
import os
from unittest import mock

import pytest
from magpie_testing import run_recipe

from nemo_ext.errors import ConfigError
from nemo_ext.recipes.devices import devices_per_node
from nemo_ext.recipes.trainer import trainer_arguments
from nemo_ext.settings.trainer import TrainerSettings
from nemo_ext.stages import ONLINE_PO

GPU_SPELLINGS = ["auto", -1, "-1", "0,1", [0, 1], 2, "2", "1,", 1, "3", [2]]
CPU_SPELLINGS = ["auto", 1, 2, "2", " 3 "]


def lightnings_count(devices, accelerator: str) -> int:
    from lightning.pytorch.trainer.connectors.accelerator_connector import _AcceleratorConnector

    connector = _AcceleratorConnector(devices=devices, accelerator=accelerator, strategy="auto", num_nodes=1)
    return len(getattr(connector.strategy, "parallel_devices", None) or [None])


@pytest.fixture
def four_gpus():
    """Lightning's view of a node with 4 GPUs (this machine has none; only device discovery is simulated)."""
    import lightning.fabric.accelerators.cuda as fabric_cuda

    with (
        mock.patch.object(fabric_cuda, "num_cuda_devices", lambda: 4),
        mock.patch("torch.cuda.is_available", lambda: True),
        mock.patch("torch.cuda.device_count", lambda: 4),
    ):
        yield 4


@pytest.mark.parametrize("devices", GPU_SPELLINGS, ids=repr)
@pytest.mark.parametrize("accelerator", ["gpu", "auto"])
def test_gpu_spellings_count_as_lightning_counts(four_gpus, devices, accelerator):
    assert devices_per_node(devices, accelerator) == lightnings_count(devices, accelerator)


@pytest.mark.parametrize("devices", CPU_SPELLINGS, ids=repr)
def test_cpu_spellings_count_as_lightning_counts(devices):
    assert devices_per_node(devices, "cpu", gpus=0) == lightnings_count(devices, "cpu")


@pytest.mark.parametrize("devices", ["auto", -1, "-1", "0,1", [0, 1]], ids=repr)
def test_every_multi_gpu_spelling_gets_the_strategy_that_works(four_gpus, devices):
    trainer = TrainerSettings.parse({"accelerator": "gpu", "devices": devices, "num_nodes": 1, "strategy": "auto"})
    assert trainer_arguments(trainer)["strategy"] == "ddp_find_unused_parameters_true"


def test_one_device_keeps_lightnings_choice(four_gpus):
    trainer = TrainerSettings.parse({"accelerator": "gpu", "devices": "1,", "strategy": "auto"})
    assert trainer_arguments(trainer)["strategy"] == "auto"


@pytest.mark.parametrize("devices", [-1, "-1", 0, "x", True, "0,1"], ids=repr)
def test_spellings_the_cpu_refuses_fail_with_the_key(devices):
    if devices == "0,1":  # GPU ids on a CPU-only node: Lightning counts them, and fails later for want of GPUs
        assert devices_per_node(devices, "cpu", gpus=0) == 2
        return
    with pytest.raises(ConfigError, match=r"trainer\.devices"):
        devices_per_node(devices, "cpu", gpus=0)


@pytest.mark.e2e
@pytest.mark.multiprocess
def test_two_processes_from_a_string_spelling_with_the_nemo_reward_for_three_steps(tiny, tmp_path):
    """`devices="2"` (a string, as a YAML or an env var gives it) starts 2 processes with the strategy that works,
    and the NeMo ASR reward trains past step 2 under DDP (its buffers stay out of DDP's buffer sync)."""
    args = [
        "--config-name",
        "online_po_tiny",
        f"tiny_root={tiny.root}",
        f"exp_manager.exp_dir={tmp_path / 'runs'}",
        'trainer.devices="2"',
        "trainer.max_steps=3",
        "model.reward_asr_model=nemo",
    ]
    result = run_recipe("online_po.py", *args, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "Inference tensors do not track version counter" not in output
    [state] = glob.glob(str(tmp_path / "runs" / "tiny_online_po" / "*" / "state" / "run_state.json"))
    assert '"global_step": 3' in open(state).read()
    memory = os.path.join(os.path.dirname(os.path.dirname(state)), "memory")
    assert sorted(os.listdir(memory)) == ["rank0.jsonl", "rank1.jsonl", "step_anatomy.png"]


def test_a_bad_spelling_is_refused_before_any_model_is_built(tiny_config):
    with pytest.raises(ConfigError, match=r"trainer\.devices.*'x'"):
        ONLINE_PO.parse(tiny_config("online_po_tiny", "trainer.devices=x"))
