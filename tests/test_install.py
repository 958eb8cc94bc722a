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


def pins(lines) -> dict[str, str]:
    """name -> version of every `name==version` (names normalized as pip does, extras dropped)."""
    import re

    found = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(3)
    return found


def test_the_lock_pins_every_package_and_agrees_with_setup_cfg():
    """requirements.lock (what install.sh installs with) holds setup.cfg's pins at the same versions, pins every line
    it holds, and leaves torch to install.sh."""
    import configparser

    lock_lines = [line for line in (REPO / "requirements.lock").read_text().splitlines() if line.strip()]
    entries = [line for line in lock_lines if not line.startswith("#")]
    lock = pins(entries)
    assert len(lock) == len(entries) > 100  # every line a pin: the whole resolved environment
    assert "torch" not in lock
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    direct = setup["options"]["install_requires"].splitlines() + setup["options.extras_require"]["dev"].splitlines()
    declared = pins(direct)
    assert len(declared) == len([line for line in direct if line.strip() and not line.strip().startswith("#")])
    for name, version in declared.items():
        assert lock.get(name) == version, f"{name}: setup.cfg {version}, requirements.lock {lock.get(name)}"


def test_install_sh_installs_with_the_lock():
    script = (REPO / "scripts" / "install.sh").read_text()
    assert "--constraint requirements.lock" in script
