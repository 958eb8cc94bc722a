"""Every shell script in the repo passes shellcheck and bash -n."""

import shutil
import subprocess

import pytest
from magpie_testing import REPO

SCRIPTS = sorted(
    str(p) for p in [*(REPO / "scripts").rglob("*"), *(REPO / "tests").glob("*.sh")] if p.suffix in (".sh", ".sbatch")
) + [str(REPO / ".ci/run")]


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="needs shellcheck (bash scripts/install_test_tools.sh)")
def test_shellcheck_passes_on_every_script():
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    for script in SCRIPTS:
        assert subprocess.run(["bash", "-n", script]).returncode == 0, script


def rendezvous(tmp_path, hostname: str, node_addr: str):
    """magpie_export_rendezvous from scripts/slurm/common.sh, with `scontrol` answering for a node whose SLURM
    name is `hostname` and whose NodeAddr is `node_addr` (what the real two-node tests cannot vary)."""
    import os

    stub = tmp_path / "bin" / "scontrol"
    stub.parent.mkdir()
    stub.write_text(
        "#!/bin/sh\n"
        f'[ "$2" = hostnames ] && echo {hostname} && exit 0\n'
        f'[ "$2" = node ] && echo "NodeName={hostname} Arch=x86_64 NodeAddr={node_addr} NodeHostName={hostname}"\n'
    )
    stub.chmod(0o755)
    script = (
        'set -euo pipefail; source scripts/slurm/common.sh; magpie_export_rendezvous; echo "$MASTER_ADDR $MASTER_PORT"'
    )
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env={
            **os.environ,
            "PATH": f"{stub.parent}:{os.environ['PATH']}",
            "SLURM_JOB_NODELIST": hostname,
            "SLURM_JOB_ID": "20007",
        },
        capture_output=True,
        text=True,
        timeout=30,  # a rendezvous that waited on an unresolvable name would hang: bounded, and then the test fails
    )
    return result


def test_rendezvous_address_is_the_first_nodes_address_not_its_name(tmp_path):
    result = rendezvous(tmp_path, "gpu-node-017", "127.0.0.5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["127.0.0.5", "20007"]


def test_rendezvous_fails_in_seconds_when_the_first_node_resolves_to_nothing(tmp_path):
    result = rendezvous(tmp_path, "m1.invalid", "m1.invalid")
    assert result.returncode == 2
    assert "the first node m1.invalid (NodeAddr m1.invalid) resolves to no IPv4 address" in result.stderr


@pytest.mark.parametrize("value", ["x", "-1", "1.5"])
def test_a_bad_restart_bound_is_refused_before_anything_is_queued(tmp_path, value):
    import os

    result = subprocess.run(
        ["bash", str(REPO / "scripts/slurm/submit.sh"), "online_po", "--config-name", "online_po_tiny"],
        cwd=tmp_path,
        env={**os.environ, "MAGPIE_MAX_RESTARTS": value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"launcher: MAGPIE_MAX_RESTARTS={value} is invalid; allowed: a whole number >= 0")


def test_the_command_that_continues_a_run_names_its_folder_once():
    """The launcher's 'continue it with' command: the user's arguments without their resume=, then the run folder's
    (it repeated resume=, and the repeat was refused again)."""
    script = 'source scripts/slurm/common.sh; echo "$(magpie_without_resume "$@")resume=/runs/a"'
    arguments = ["--config-name", "online_po_tiny", "resume=/runs/a", "+resume=x", "++resume=y", "trainer.max_steps=9"]
    result = subprocess.run(
        ["bash", "-c", script, "magpie", *arguments], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "--config-name online_po_tiny trainer.max_steps=9 resume=/runs/a"
