"""The value checks every settings block uses, one implementation each. Each refusal is the one ConfigError form:
`KEY=VALUE is invalid; allowed: WHAT`."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from nemo_ext.errors import ConfigError

MISSING = "???"  # OmegaConf's mandatory value, as it reads after to_container(..., resolve=True)


def did_you_mean(name: object, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), sorted(known), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def refuse_unknown_keys(node: Mapping, known: Iterable[str], prefix: str, owner: str) -> None:
    """Every key of `node` (found at `prefix`, e.g. "data.") must be in `known`; `owner` says whose keys they are
    ("of the data block")."""
    known = set(known)
    for key in node:
        if key not in known:
            raise ConfigError(
                f"{prefix}{key}",
                node[key],
                f"a key {owner}: {', '.join(sorted(known))}{did_you_mean(key, known)}",
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _range_text(kind: str, minimum, maximum, above) -> str:
    if above is not None and maximum is not None:
        return f"{kind} in ({above:g}, {maximum:g}]"
    if above is not None:
        return f"{kind} > {above:g}"
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum:g}, {maximum:g}]"
    if minimum is not None:
        return f"{kind} >= {minimum:g}"
    if maximum is not None:
        return f"{kind} <= {maximum:g}"
    return kind


def integer(key: str, value: object, minimum: int | None = None, maximum: int | None = None, none: bool = False):
    """An int (not a bool) in [minimum, maximum]; None too when `none`."""
    if value is None and none:
        return None
    if not _is_int(value) or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        allowed = _range_text("an integer", minimum, maximum, None)
        raise ConfigError(key, value, f"null or {allowed}" if none else allowed)
    return value


def number(
    key: str,
    value: object,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    none: bool = False,
):
    """An int or float (not a bool) in [minimum, maximum] (or > `above`); None too when `none`."""
    if value is None and none:
        return None
    if (
        not _is_number(value)
        or value != value  # NaN
        or (minimum is not None and value < minimum)
        or (maximum is not None and value > maximum)
        or (above is not None and value <= above)
    ):
        allowed = _range_text("a number", minimum, maximum, above)
        raise ConfigError(key, value, f"null or {allowed}" if none else allowed)
    return float(value)


def boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")
    return value


def choice(key: str, value: object, options: Iterable[str]) -> str:
    options = tuple(options)
    if value not in options:
        raise ConfigError(key, value, ", ".join(options))
    return value


def text(key: str, value: object, what: str = "a non-empty string", none: bool = False) -> str | None:
    if value is None and none:
        return None
    if not isinstance(value, str) or not value or value == MISSING:
        raise ConfigError(key, value, f"null or {what}" if none else what)
    return value


def mapping(key: str, value: object, none: bool = True) -> dict:
    """A config node (a mapping); {} for null when `none`."""
    if value is None and none:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(key, value, "a mapping of keys to values")
    return dict(value)


def plain(node) -> dict:
    """A config node (DictConfig or mapping) as a plain dict with its ${...} resolved: what the settings parsers
    read. An interpolation to a missing value stays "???" (its key's own check names it)."""
    from omegaconf import OmegaConf

    if not OmegaConf.is_config(node):
        return dict(node or {})
    copy = OmegaConf.create(OmegaConf.to_container(node, resolve=False))
    OmegaConf.resolve(copy)
    return OmegaConf.to_container(copy, resolve=False)
