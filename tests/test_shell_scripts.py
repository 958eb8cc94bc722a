"""Every shell script in the repo passes shellcheck and bash -n."""

import shutil
import subprocess

import pytest
from magpie_testing import REPO

SCRIPTS = sorted(str(p) for p in (REPO / "scripts").rglob("*") if p.suffix in (".sh", ".sbatch")) + [
    str(REPO / ".ci/run")
]


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="needs shellcheck (bash scripts/install_test_tools.sh)")
def test_shellcheck_passes_on_every_script():
    result = subprocess.run(["shellcheck", "-x", *SCRIPTS], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    for script in SCRIPTS:
        assert subprocess.run(["bash", "-n", script]).returncode == 0, script
