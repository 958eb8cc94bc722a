"""Declared value rules for `model.*` keys: a key's kind, default (NeMo's code default where NeMo has one), range,
and why the range matters. The typed settings dataclasses read their fields through these."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from nemo_ext.errors import ConfigError
from nemo_ext.settings import fields as check


@dataclass(frozen=True)
class Rule:
    kind: str  # int | number | bool | choice | text
    default: object = None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None  # exclusive lower bound
    below: float | None = None  # exclusive upper bound
    options: tuple[str, ...] = ()
    none: bool = False  # null allowed
    why: str = ""  # shown after the allowed range: what a value outside it does

    def read(self, node: Mapping, name: str, prefix: str = "model."):
        key = f"{prefix}{name}"
        value = node.get(name, self.default)
        try:
            if self.kind == "int":
                return check.integer(key, value, self.minimum, self.maximum, none=self.none)
            if self.kind == "number":
                parsed = check.number(key, value, self.minimum, self.maximum, self.above, none=self.none)
                if parsed is not None and self.below is not None and parsed >= self.below:
                    raise ConfigError(key, value, f"a number < {self.below:g}")
                return parsed
            if self.kind == "bool":
                return check.boolean(key, value)
            if self.kind == "choice":
                return check.choice(key, value, self.options)
            if self.kind == "text":
                return check.text(key, value, none=self.none)
        except ConfigError as error:
            if not self.why:
                raise
            raise ConfigError(error.key, error.value, f"{error.allowed} ({self.why})") from None
        raise ValueError(f"unknown rule kind {self.kind!r}")


def integer(default=None, minimum=None, maximum=None, none=False, why="") -> Rule:
    return Rule("int", default, minimum=minimum, maximum=maximum, none=none, why=why)


def number(default=None, minimum=None, maximum=None, above=None, below=None, none=False, why="") -> Rule:
    return Rule("number", default, minimum=minimum, maximum=maximum, above=above, below=below, none=none, why=why)


def boolean(default=False, why="") -> Rule:
    return Rule("bool", default, why=why)


def choice(default, options, why="") -> Rule:
    return Rule("choice", default, options=tuple(options), why=why)


def read_fields(cls, node: Mapping, rules: Mapping[str, Rule], prefix: str = "model.", **given) -> dict:
    """The values of `cls`'s dataclass fields that have a rule, read from `node`; `given` fills the others."""
    values = dict(given)
    for field in fields(cls):
        if field.name in rules and field.name not in values:
            values[field.name] = rules[field.name].read(node, field.name, prefix)
    return values
