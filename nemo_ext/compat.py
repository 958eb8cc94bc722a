"""Running NeMo 3.0.0 on a distribution Python that predates what it assumes. Nothing here runs at import:
the recipes and the fixture builder call it first."""

from __future__ import annotations

import copy
import tarfile

_BACKPORT_MARK = "_magpie_data_filter_backport"


def backport_tar_extraction_filter() -> bool:
    """Let `TarFile.extract(..., filter="data")` work on a Python without tar extraction filters (PEP 706).

    NeMo 3.0.0 restores every `.nemo` file through `nemo.utils.tar_utils.safe_extract`, which calls
    `tar.extract(member, path, filter="data")`. Filters arrived in Python 3.8.17, 3.9.17, 3.10.12, 3.11.4 and
    3.12. Debian 12's python3 is 3.11.2, so there every restore failed with "TarFile.extract() got an
    unexpected keyword argument 'filter'". NeMo has already refused absolute paths, `..` and links by then.
    This applies the rest of what the "data" filter means: only regular files and directories; no
    setuid/setgid/sticky bits; no group or other write permission.

    Returns True when it installed the backport, False on a Python that has filters (then it does nothing)."""
    if hasattr(tarfile, "data_filter") or getattr(tarfile.TarFile.extract, _BACKPORT_MARK, False):
        return False
    original = tarfile.TarFile.extract

    def extract(self, member, path="", set_attrs=True, *, numeric_owner=False, filter=None):  # noqa: A002
        if filter is None:
            return original(self, member, path, set_attrs, numeric_owner=numeric_owner)
        if filter != "data":
            raise ValueError(f"only filter='data' is backported to this Python, not {filter!r}")
        info = self.getmember(member) if isinstance(member, str) else member
        if not (info.isfile() or info.isdir()):
            raise tarfile.ExtractError(f"{info.name}: the 'data' filter extracts regular files and directories only")
        info = copy.copy(info)
        info.mode &= 0o755
        return original(self, info, path, set_attrs, numeric_owner=numeric_owner)

    setattr(extract, _BACKPORT_MARK, True)
    tarfile.TarFile.extract = extract
    return True
