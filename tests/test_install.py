"""scripts/python_env.sh, which install.sh, demo.sh and test.sh source: the environment the project lives in.

Tested the way it failed on a stock Debian 12 / Ubuntu 24.04: a plain PATH with only the distribution's
`python3` (no `python`, a pip that refuses system installs under PEP 668), no pyenv, no venv."""

import os
import shutil
import subprocess

import pytest
from magpie_testing import REPO

STOCK_PATH = "/usr/bin:/bin"
pytestmark = pytest.mark.skipif(
    not os.path.exists("/usr/bin/python3"), reason="needs the distribution's /usr/bin/python3"
)


def choose(repo, extra_env=None):
    """Source python_env.sh in a copy of the repo's scripts/ under a clean environment; report its choice."""
    env = {"PATH": STOCK_PATH, "HOME": str(repo), **(extra_env or {})}
    script = (
        'source scripts/python_env.sh && echo "$MAGPIE_PYTHON" && command -v python3 && '
        'python3 -c "import sys; print(sys.prefix)"'
    )
    result = subprocess.run(["/bin/bash", "-c", script], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "python_env.sh", tmp_path / "scripts")
    return tmp_path


def test_outside_an_environment_a_project_venv_is_made_with_the_distribution_python3(repo):
    chosen, python3, prefix = choose(repo)
    assert chosen == str(repo / ".venv" / "bin" / "python")
    assert (python3, prefix) == (str(repo / ".venv" / "bin" / "python3"), str(repo / ".venv"))
    # pip works there: the venv's own pip, which PEP 668 does not stop.
    pip = subprocess.run([chosen, "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0 and str(repo / ".venv") in pip.stdout
    # Chosen again on the next call (demo.sh, test.sh), without a second venv.
    assert choose(repo)[0] == chosen


def test_inside_an_active_venv_it_installs_there(repo, tmp_path_factory):
    other = tmp_path_factory.mktemp("user_venv") / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(other)], check=True)
    chosen, python3, prefix = choose(repo, {"VIRTUAL_ENV": str(other), "PATH": f"{other}/bin:{STOCK_PATH}"})
    assert (python3, prefix) == (str(other / "bin" / "python3"), str(other))
    assert chosen == str(other / "bin" / "python3")
    assert not (repo / ".venv").exists()


def test_magpie_torch_keep_uses_the_python_on_path(repo):
    chosen, python3, prefix = choose(repo, {"MAGPIE_TORCH": "keep"})
    assert chosen == python3 == "/usr/bin/python3"
    assert not (repo / ".venv").exists()
