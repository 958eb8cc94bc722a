"""Which top-level `model.*` keys NeMo's classes read, found in their source: `cfg.get("k")`, `cfg.k`, `cfg["k"]`
and `"k" in cfg`, where the config is any name or attribute ending in `cfg` (`cfg`, `self.cfg`, `self._cfg`).

`nemo_ext/model_keys.py` pins the result; tests/test_model_keys.py rescans NeMo's source against it, so a NeMo
upgrade that reads a new key (or stops reading one) fails that test instead of going unnoticed."""

from __future__ import annotations

import ast
import importlib
import inspect


def _is_config(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id.endswith("cfg")
    if isinstance(node, ast.Attribute):
        return node.attr.endswith("cfg")
    return False


def keys_read(tree: ast.AST) -> set[str]:
    keys = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("get", "pop")
            and _is_config(node.func.value)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            keys.add(node.args[0].value)
        elif isinstance(node, ast.Attribute) and _is_config(node.value) and not node.attr.startswith("_"):
            keys.add(node.attr)
        elif (
            isinstance(node, ast.Subscript)
            and _is_config(node.value)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            keys.add(node.slice.value)
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.left.value, str)
            and any(isinstance(op, ast.In) for op in node.ops)
            and any(_is_config(c) for c in node.comparators)
        ):
            keys.add(node.left.value)
    # Methods of DictConfig, not keys.
    return keys - {"get", "pop", "keys", "items", "values", "copy", "update", "setdefault"}


def keys_read_by_module(module_name: str) -> set[str]:
    return keys_read(ast.parse(inspect.getsource(importlib.import_module(module_name))))


def keys_read_by_class(module_name: str, class_name: str) -> set[str]:
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    return keys_read(cls)


def code_defaults(tree: ast.AST) -> dict[str, set]:
    """`cfg.get("k", <literal>)` defaults, per key (a key read in several places may have several)."""
    defaults: dict[str, set] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and _is_config(node.func.value)
            and len(node.args) == 2
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            try:
                value = ast.literal_eval(node.args[1])
            except ValueError:
                continue
            if isinstance(value, list | dict):
                continue  # containers are architecture defaults, never a PO setting
            defaults.setdefault(node.args[0].value, set()).add(value)
    return defaults


def code_defaults_for(module_name: str, class_name: str, base_modules: tuple[str, ...]) -> dict[str, set]:
    """The class's own defaults, and the base modules' for keys the class does not read itself."""
    tree = ast.parse(inspect.getsource(importlib.import_module(module_name)))
    [cls] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    merged: dict[str, set] = {}
    for base in base_modules:
        merged.update(code_defaults(ast.parse(inspect.getsource(importlib.import_module(base)))))
    merged.update(code_defaults(cls))
    return merged
