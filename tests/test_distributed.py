"""Multi-process GRPO: real processes, DDP over gloo, memory telemetry reduced across ranks."""

import glob
import os

import pytest
from magpie_testing import free_port, read_jsonl, run_recipe, slurm_env, start_recipe

from nemo_ext_tools.wandb_offline import find_offline_runs, read_offline_run

pytestmark = [pytest.mark.e2e, pytest.mark.multiprocess]


def tiny_args(tiny, exp_dir, *extra):
    return ["--config-name", "online_po_tiny", f"tiny_root={tiny.root}", f"exp_manager.exp_dir={exp_dir}", *extra]


def test_two_process_ddp_grpo_with_lightning_launcher(tiny, tmp_path):
    result = run_recipe("online_po.py", *tiny_args(tiny, tmp_path / "runs", "trainer.devices=2"), cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [version_dir] = glob.glob(str(tmp_path / "runs" / "tiny_online_po" / "*" / "memory"))
    assert sorted(os.listdir(version_dir)) == ["rank0.jsonl", "rank1.jsonl", "step_anatomy.png"]  # rank 0 draws
    audios = os.listdir(os.path.join(os.path.dirname(version_dir), "audios"))
    assert any(a.startswith("predicted_audioRank1_") for a in audios)
    assert "(worst of 2 ranks)" in result.stdout + result.stderr  # the end-of-run memory summary


def test_two_nodes_by_slurm_env_reduce_memory_figures_across_ranks(tiny, tmp_path):
    port, exp_dir = free_port(), tmp_path / "runs"
    # 4 items over 2 ranks at batch 2: one step per epoch.
    args = tiny_args(tiny, exp_dir, "trainer.num_nodes=2", "trainer.devices=1", "trainer.max_epochs=2")
    ranks = [
        start_recipe("online_po.py", *args, env=slurm_env(r, 2, port), cwd=tmp_path, log_path=tmp_path / f"rank{r}.log")
        for r in range(2)
    ]
    for rank, process in enumerate(ranks):
        assert process.wait(timeout=600) == 0, (tmp_path / f"rank{rank}.log").read_text()[-4000:]
    logs = (tmp_path / "rank0.log").read_text() + (tmp_path / "rank1.log").read_text()
    assert "(worst of 2 ranks)" in logs

    # The job id is the exp_manager version: both ranks wrote into one folder.
    memory_dir = exp_dir / "tiny_online_po" / "4242" / "memory"
    per_rank = {r: read_jsonl(memory_dir / f"rank{r}.jsonl") for r in range(2)}
    [run_file] = find_offline_runs(str(exp_dir))
    logged = read_offline_run(run_file)
    assert logged.group == "4242"  # W&B run grouped by the SLURM job id

    steps = [row for row in logged.history if "cpu/rss_gb_min" in row]
    assert len(steps) == 3  # load + 2 steps
    differing = 0
    for index, row in enumerate(steps):
        local = [per_rank[r][index] for r in range(2)]
        assert {entry["rank"] for entry in local} == {0, 1}
        assert {entry["cluster_environment"] for entry in local} == {"SLURMEnvironment"}
        assert {entry["world_size"] for entry in local} == {2}
        for key in ("cpu/rss_gb", "cpu/peak_rss_gb"):
            values = [entry[key] for entry in local]
            assert row[key] == pytest.approx(max(values), rel=1e-12)
            assert row[f"{key}_min"] == pytest.approx(min(values), rel=1e-12)
            assert row[f"{key}_mean"] == pytest.approx(sum(values) / 2, rel=1e-12)
            differing += values[0] != values[1]
    assert differing > 0, "ranks reported identical figures: the reduction would be untested"
    assert steps[0]["whisper/weights_bytes"] == steps[0]["whisper/weights_bytes_min"] == tiny.whisper_param_count * 2
    # The sampling figures of both ranks' rollouts (the per-rank reduction by hand: tests/test_across_ranks.py).
    sampled = [row for row in logged.history if "sampling/importance_sampling_ratio/mean" in row]
    assert len(sampled) == 2
    for row in sampled:
        ratio = "sampling/importance_sampling_ratio"
        assert row[f"{ratio}/min"] <= row[f"{ratio}/mean"] <= row[f"{ratio}/max"]
        assert 0 < row["sampling/sampling_logp_difference/mean"] <= row["sampling/sampling_logp_difference/max"]


@pytest.mark.parametrize(
    ("env", "reason"),
    [({"WANDB_MODE": "no-such-mode"}, "ValidationError"), ({"WANDB_MODE": "online"}, "No API key configured")],
)
def test_wandb_failure_does_not_kill_training(tiny, tmp_path, env, reason):
    home = tmp_path / "home"  # no ~/.netrc, no W&B settings: online mode has no key
    home.mkdir()
    result = run_recipe(
        "online_po.py",
        *tiny_args(tiny, tmp_path / "runs", "trainer.max_steps=1", "exp_manager.wandb_logger_kwargs.offline=false"),
        cwd=tmp_path,
        env={**env, "HOME": str(home), "WANDB_CONFIG_DIR": str(home), "WANDB_INIT_TIMEOUT": "20"},
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "W&B logging disabled, training continues without it" in output and reason in output
    assert "Memory summary: whisper weights" in output  # printed at the end of fit
