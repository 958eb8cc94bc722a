"""The import graph, read from the modules' own imports: the runtime never imports the tooling, no stage-specific
recipe module imports another, the stage declarations and settings import nothing heavy at module level, and the
telemetry modules form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from magpie_testing import REPO

PACKAGE = REPO / "nemo_ext"
HEAVY = ("torch", "lightning", "nemo", "transformers", "hydra")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Absolute module names `path` imports (relative imports resolved); top level: not inside a function."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    package = module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" else module_name(path)
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def runtime_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_runtime_package_never_imports_the_tooling():
    for path in runtime_modules():
        tooling = {name for name in imports(path) if name == "nemo_ext_tools" or name.startswith("nemo_ext_tools.")}
        assert not tooling, f"{path.relative_to(REPO)} imports {sorted(tooling)}"
    for path in sorted((REPO / "recipes").glob("*.py")):
        assert not {n for n in imports(path) if n.startswith("nemo_ext_tools")}, path.name


def test_no_recipe_module_imports_another():
    """A stage's own modules (its entry point, its runner, its declaration) import shared code only."""
    stages = [p.stem for p in (REPO / "recipes").glob("*.py")]
    assert sorted(stages) == sorted(
        p.stem for p in (PACKAGE / "stages").glob("*.py") if p.stem not in ("__init__", "stage")
    )
    groups = {
        "recipes": {name: REPO / "recipes" / f"{name}.py" for name in stages},
        "nemo_ext.recipes": {name: PACKAGE / "recipes" / f"{name}.py" for name in stages},
        "nemo_ext.stages": {name: PACKAGE / "stages" / f"{name}.py" for name in stages},
    }
    for modules in groups.values():
        for name, path in modules.items():
            if not path.exists():
                continue
            others = {f"{group}.{other}" for group in groups for other in stages if other != name}
            found = {n for n in imports(path) if any(n == o or n.startswith(o + ".") for o in others)}
            assert not found, f"{path.relative_to(REPO)} imports {sorted(found)}"


def test_settings_stages_and_declarations_import_nothing_heavy_at_module_level():
    pure = sorted((PACKAGE / "settings").glob("*.py")) + sorted((PACKAGE / "stages").glob("*.py"))
    pure += [
        PACKAGE / "grpo" / name
        for name in ("losses.py", "reward_terms.py", "advantages.py", "magpietts_rewards.py", "__init__.py")
    ]
    pure += [PACKAGE / "errors.py", PACKAGE / "manifests.py", PACKAGE / "datagen_layout.py", PACKAGE / "pairs.py"]
    pure += [PACKAGE / "telemetry" / "phases.py", PACKAGE / "telemetry" / "__init__.py"]
    pure += [PACKAGE / "recipes" / name for name in ("early_signals.py", "run_stopped.py", "entry.py")]
    for path in pure:
        heavy = {n for n in imports(path, top_level_only=True) if n.split(".")[0] in HEAVY}
        if path.name == "entry.py":
            heavy -= {"hydra"}  # the entry point is Hydra's
        assert not heavy, f"{path.relative_to(REPO)} imports {sorted(heavy)} at module level"


def test_the_telemetry_modules_form_no_cycle():
    modules = {module_name(p): p for p in (PACKAGE / "telemetry").glob("*.py")}
    graph = {
        name: {other for other in modules if other != name and other in imports(path) and other != "nemo_ext.telemetry"}
        for name, path in modules.items()
    }

    def reaches(start, target, seen=()):
        return any(n == target or (n not in seen and reaches(n, target, (*seen, n))) for n in graph[start])

    for name in graph:
        assert not reaches(name, name), f"{name} imports itself through {sorted(graph[name])}"
