"""The "changed relative to NeMo" table (docs/parity.md): every row names a test, and every test it names exists; the
README's first screen holds the two set-up commands and the checkpoint section, and it fits in about 150 lines."""

from __future__ import annotations

import ast
import re

from magpie_testing import REPO


def table_rows() -> list[str]:
    text = (REPO / "docs" / "parity.md").read_text()
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


def test_the_readme_starts_with_the_two_commands_and_where_a_checkpoint_goes():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, len(lines)
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:2] == ["## Set-up (fresh machine, CPU is enough)", "## Your checkpoint"]
    first_screen = "\n".join(lines[:30])
    assert "bash scripts/demo.sh" in first_screen and "bash scripts/test.sh" in first_screen
    for line in lines:  # every link goes somewhere
        for target in re.findall(r"\]\(([^)#]+)\)", line):
            assert (REPO / target).exists(), target


def test_ci_runs_the_readmes_test_command():
    assert "bash scripts/test.sh" in (REPO / ".ci" / "run").read_text()
