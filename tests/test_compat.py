"""NeMo's `.nemo` extraction on a Python without tar extraction filters, the distribution's python3 on Debian 12."""

import subprocess
import sys

import pytest
from magpie_testing import REPO

SYSTEM_PYTHON = "/usr/bin/python3"

PROBE = r"""
import io, os, sys, tarfile, tempfile
sys.path.insert(0, sys.argv[1])
from nemo_ext.compat import backport_tar_extraction_filter

def archive(members):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, mode, kind in members:
            info = tarfile.TarInfo(name)
            info.mode, info.type = mode, kind
            data = b"x" if kind == tarfile.REGTYPE else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return tarfile.open(fileobj=buffer)

def extract(name, mode, kind):
    out = tempfile.mkdtemp()
    tar = archive([(name, mode, kind)])
    try:
        tar.extract(tar.getmember(name), out, filter="data")
        return oct(os.stat(os.path.join(out, name)).st_mode & 0o7777)
    except Exception as error:
        return type(error).__name__

print("before", extract("model_config.yaml", 0o644, tarfile.REGTYPE))
print("installed", backport_tar_extraction_filter())
print("file", extract("model_config.yaml", 0o6775, tarfile.REGTYPE))
print("fifo", extract("pipe", 0o644, tarfile.FIFOTYPE))
print("again", backport_tar_extraction_filter())
"""


def probe(python):
    result = subprocess.run([python, "-c", PROBE, str(REPO)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


def has_filters(python) -> bool:
    """Ask the interpreter: filters arrived in 3.8.17, 3.9.17, 3.10.12, 3.11.4 and 3.12 (not Debian 12's 3.11.2)."""
    check = subprocess.run([python, "-c", "import tarfile; tarfile.data_filter"], capture_output=True, timeout=60)
    return check.returncode == 0


def system_python_lacks_filters() -> bool:
    try:
        return not has_filters(SYSTEM_PYTHON)
    except FileNotFoundError:
        return False


@pytest.mark.skipif(
    not system_python_lacks_filters(), reason="needs a /usr/bin/python3 without tar filters (Debian 12)"
)
def test_backport_lets_nemo_extract_with_the_data_filter_on_the_distribution_python():
    found = probe(SYSTEM_PYTHON)
    assert found["before"] == "TypeError"  # what every .nemo restore hit
    assert found["installed"] == "True"
    assert found["file"] == "0o755"  # setuid/setgid and group write dropped, as the data filter does
    assert found["fifo"] == "ExtractError"
    assert found["again"] == "False"


def test_the_backport_installs_exactly_where_the_python_running_the_suite_lacks_filters():
    found = probe(sys.executable)
    if has_filters(sys.executable):
        assert (found["before"], found["installed"], found["file"]) == ("0o644", "False", "0o755")
    else:
        assert (found["before"], found["installed"], found["file"]) == ("TypeError", "True", "0o755")
    assert found["again"] == "False"
