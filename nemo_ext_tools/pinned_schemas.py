"""What nemo_ext/settings pins from Lightning and NeMo, computed from the installed packages. Tests compare the
pinned tables with these; after an upgrade, `python scripts/pin_schemas.py` prints the new tables."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import pathlib
import typing


def annotation_spec(annotation) -> tuple[str, ...]:
    """A typing annotation as the settings' type tokens: "int", "float", "str", "bool", "None", "list[int]",
    "dict", literal values as their repr ("'warn'", "64"), and "object" for what a YAML value cannot be."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        tokens: list[str] = []
        for argument in typing.get_args(annotation):
            tokens += [t for t in annotation_spec(argument) if t not in tokens]
        return tuple(tokens)
    if origin is typing.Literal:
        return tuple(repr(value) for value in typing.get_args(annotation))
    if origin in (list, typing.List):  # noqa: UP006 - Lightning's own spelling
        (item,) = typing.get_args(annotation)
        inner = annotation_spec(item)
        return (f"list[{inner[0]}]",) if inner in (("int",), ("str",)) else ("object",)
    if origin in (dict, typing.Dict):  # noqa: UP006
        return ("dict",)
    if annotation is type(None):
        return ("None",)
    if annotation in (int, float, str, bool):
        return (annotation.__name__,)
    if annotation is pathlib.Path:
        return ("str",)
    if annotation is datetime.timedelta or inspect.isclass(annotation) or origin is not None:
        return ("object",)
    raise TypeError(f"no type token for {annotation!r}")


def lightning_trainer_arguments() -> dict[str, tuple[str, ...]]:
    import lightning.pytorch as pl

    signature = inspect.signature(pl.Trainer.__init__)
    return {name: annotation_spec(p.annotation) for name, p in signature.parameters.items() if name != "self"}


def lightning_strategy_names() -> tuple[str, ...]:
    from lightning.pytorch.strategies import StrategyRegistry

    return tuple(sorted(StrategyRegistry.available_strategies()))


def lightning_accelerator_names() -> tuple[str, ...]:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    return tuple(sorted(AcceleratorRegistry.available_accelerators()))


def dataclass_tree(cls) -> dict:
    """A dataclass as {field: (type repr, default repr or nested tree)}, for comparing two schemas field by field."""
    tree = {}
    for field in dataclasses.fields(cls):
        hints = typing.get_type_hints(cls)
        kind = hints[field.name]
        nested = [a for a in (typing.get_args(kind) or (kind,)) if dataclasses.is_dataclass(a)]
        if nested:
            tree[field.name] = (f"Optional[{nested[0].__name__}]", dataclass_tree(nested[0]))
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = "<required>"
        tree[field.name] = (_type_name(kind), repr(default))
    return tree


def _type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin is typing.Union:
        return "Union[" + ", ".join(_type_name(a) for a in typing.get_args(kind)) + "]"
    if origin is not None:
        return (
            f"{getattr(origin, '__name__', str(origin))}["
            + ", ".join(_type_name(a) for a in typing.get_args(kind))
            + "]"
        )
    return getattr(kind, "__name__", str(kind))


def nemo_exp_manager_schema_source() -> str:
    """Python source of NeMo's ExpManagerConfig and every dataclass it nests, for nemo_ext/settings/nemo_exp_manager.py
    (a structured-merge schema that is read without importing NeMo, Lightning or torch)."""
    import enum

    from nemo.utils.exp_manager import ExpManagerConfig

    ordered: list[type] = []

    def collect(cls) -> None:
        if cls in ordered:
            return
        hints = typing.get_type_hints(cls)
        for field in dataclasses.fields(cls):
            for argument in typing.get_args(hints[field.name]) or (hints[field.name],):
                if dataclasses.is_dataclass(argument):
                    collect(argument)
        ordered.append(cls)

    collect(ExpManagerConfig)

    def render_type(kind) -> str:
        origin = typing.get_origin(kind)
        arguments = typing.get_args(kind)
        if origin is typing.Union and type(None) in arguments and len(arguments) == 2:
            return f"Optional[{render_type(next(a for a in arguments if a is not type(None)))}]"
        if origin in (dict, typing.Dict):  # noqa: UP006
            return f"Dict[{', '.join(render_type(a) for a in arguments)}]"
        if origin in (list, typing.List):  # noqa: UP006
            return f"List[{render_type(arguments[0])}]"
        if kind is typing.Any:
            return "Any"
        if isinstance(kind, type) and issubclass(kind, enum.Enum):
            return f"{kind.__module__}.{kind.__name__}"
        return kind.__name__

    def render_default(field) -> str:
        if field.default_factory is not dataclasses.MISSING:
            value = field.default_factory()
            if dataclasses.is_dataclass(value):
                return f"field(default_factory={type(value).__name__})"
            return f"field(default_factory=lambda: {value!r})"
        value = field.default
        if isinstance(value, enum.Enum):
            return f"{type(value).__module__}.{type(value).__name__}.{value.name}"
        return repr(value)

    lines = [
        '"""NeMo 3.0.0\'s ExpManagerConfig and the dataclasses it nests (nemo.utils.exp_manager, nemo.utils.loggers),',
        "pinned: `exp_manager` is checked by the same structured merge NeMo's exp_manager() does, before Lightning,",
        "torch or NeMo is imported. Written by nemo_ext_tools.pinned_schemas.nemo_exp_manager_schema_source();",
        'tests/test_settings_schemas.py compares it field by field with the installed NeMo."""',
        "",
        "# ruff: noqa: UP006, UP007, UP035, UP045 - NeMo's own spelling, kept so the comparison is textual",
        "import signal",
        "from dataclasses import dataclass, field",
        "from typing import Any, Dict, List, Optional",
        "",
    ]
    for cls in ordered:
        hints = typing.get_type_hints(cls)
        lines += ["", "@dataclass", f"class {cls.__name__}:"]
        for field in dataclasses.fields(cls):
            lines.append(f"    {field.name}: {render_type(hints[field.name])} = {render_default(field)}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
