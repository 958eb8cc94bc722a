"""The README's "changed relative to NeMo" table: every row names a test, and every test it names exists."""

from __future__ import annotations

import ast
import re

from magpie_testing import REPO


def table_rows() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## What was fixed or changed relative to NeMo 3.0.0")[1].split("### Defaults")[0]
    return [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| NeMo 3.0.0")]


def defined_tests(path) -> set[str]:
    tree = ast.parse((REPO / path).read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name.startswith("test")}


def test_every_row_names_tests_that_exist():
    rows = table_rows()
    assert len(rows) >= 20
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4, row[:80]
        references = re.findall(r"`(tests/[\w/]+\.py)?(?:::(\w+))?`", cells[3])
        assert references, f"no test named: {row[:80]}"
        current = None
        for path, name in references:
            current = path or current
            assert current and (REPO / current).is_file(), row[:80]
            if name:
                assert name in defined_tests(current), f"{current}::{name}"
