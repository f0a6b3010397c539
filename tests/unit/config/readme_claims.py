"""The shared helpers of review 104's README tests (``test_review104_readme_*.py``): the
README read as it is when a test runs, a claim found in it by a quote (whitespace folded, a TOML
comment's continuation lines joined), its sections and its ```toml blocks; the schema in
``config/`` walked (its value fields, their defaults, bounds and base types); and a config
written and loaded (or refused) from a key set at its table."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from tests.readme_text import README, claim, folded, section

#: Re-exported for the test modules.
__all__ = ["README"]


def _folded(text: str) -> str:
    """``text`` with its whitespace folded, and a comment's continuation lines joined."""
    return folded(text, comments=True)


def _claim(quote: str) -> None:
    """The README still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    claim(quote, comments=True)


_section = section


def _toml_blocks() -> list[tuple[int, str]]:
    """Every ```toml block of the README: (the line of its fence, its text)."""
    return [
        (README[: m.start()].count("\n") + 1, m[1])
        for m in re.finditer(r"```toml\n(.*?)```", README, re.S)
    ]


BLOCKS = _toml_blocks()


# -- the schema, walked -----------------------------------------------------------------------


def _struct_of(annotation: object) -> type[msgspec.Struct] | None:
    """The config Struct a field holds (itself, in a list, or optional), else None."""
    for held in (annotation, *typing.get_args(annotation)):
        candidate = typing.get_args(held)[0] if typing.get_origin(held) is list else held
        if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
            return candidate
    return None


def _leaves(
    struct: type[msgspec.Struct] = RingexConfig, at: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], msgspec.structs.FieldInfo]]:
    """Every field of the schema that holds a value, not a table: (path, its FieldInfo)."""
    for field in msgspec.structs.fields(struct):
        inner = _struct_of(field.type)
        if inner is not None:
            yield from _leaves(inner, (*at, field.name))
        else:
            yield (*at, field.name), field


LEAVES = dict(_leaves())
TABLES = sorted({path[:-1] for path in LEAVES})


def _field(dotted: str) -> msgspec.structs.FieldInfo:
    return LEAVES[tuple(dotted.split("."))]


def _default(field: msgspec.structs.FieldInfo) -> object:
    if field.default_factory is not msgspec.NODEFAULT:
        return field.default_factory()
    return field.default


def _metas(annotation: object) -> dict[str, Any]:
    """The constraints (ge, gt, le, lt, pattern) of ``annotation``, through ``| None``."""
    found: dict[str, Any] = {}
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        base, *metas = typing.get_args(annotation)
        for meta in metas:
            if isinstance(meta, msgspec.Meta):
                for key in ("ge", "gt", "le", "lt", "pattern"):
                    if getattr(meta, key) is not None:
                        found[key] = getattr(meta, key)
        found |= _metas(base)
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found |= _metas(arg)
    return found


def _base(annotation: object) -> object:
    """``annotation`` without ``Annotated`` and ``| None``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(inner) != 1:
                return annotation
            annotation = inner[0]
        else:
            return annotation


# -- loading ----------------------------------------------------------------------------------

#: What a table of a list needs before the key a test sets (its required fields).
HEADS: dict[tuple[str, ...], dict[str, str]] = {
    ("gateways",): {"name": '"gw1"', "id": "1"},
    ("symbols",): {"name": '"BTC-USD"', "id": "1"},
    ("assets",): {"name": '"USD"', "id": "1", "decimals": "6"},
    ("matchers",): {"name": '"m1"', "symbols": '["BTC-USD", "ETH-USD"]'},
}
#: ... and what the rest of the config then needs to load (a matcher for the one symbol, the
#: assets the default symbols trade).
TAILS: dict[tuple[str, ...], str] = {
    ("symbols",): '[[matchers]]\nname = "m1"\nsymbols = ["BTC-USD"]\n',
    ("assets",): '[[assets]]\nname = "BTC"\nid = 2\ndecimals = 8\n'
    '[[assets]]\nname = "ETH"\nid = 3\ndecimals = 8\n',
}


def _setting(table: tuple[str, ...], key: str, value: str) -> str:
    """A TOML text setting ``table.key = value`` and what its table needs besides."""
    if not table:
        return f"{key} = {value}\n"
    if table == ("gateways", "rest"):
        return _setting(("gateways",), "port", "9878") + f"[gateways.rest]\n{key} = {value}\n"
    head = HEADS.get(table)
    if head is None:
        return f"[{'.'.join(table)}]\n{key} = {value}\n"
    lines = [f"{k} = {v}" for k, v in head.items() if k != key]
    text = f"[[{'.'.join(table)}]]\n" + "\n".join([*lines, f"{key} = {value}"]) + "\n"
    return text + TAILS.get(table, "")


def _shown_at(table: tuple[str, ...], key: str) -> str:
    """The key as a refusal writes it (``gateways[0].rest.port``, ``ring.capacity``)."""
    parts = [f"{part}[0]" if (part,) in HEADS else part for part in table]
    return ".".join([*parts, key])


def _write(tmp_path: Path, text: str, name: str = "ringex.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _load(tmp_path: Path, text: str, name: str = "ringex.toml") -> RingexConfig:
    return load_profile(str(_write(tmp_path, text, name)))


def _refusal(tmp_path: Path, text: str) -> str:
    """The message ``load_profile`` refuses ``text`` with (the test fails if it loads)."""
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, text)
    return str(refused.value)


def _toml_paths(node: dict[str, Any], at: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The key paths a TOML document sets (a list of tables: its items' keys)."""
    for key, value in node.items():
        if isinstance(value, dict) and (*at, key) not in LEAVES:
            yield from _toml_paths(value, (*at, key))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                yield from _toml_paths(item, (*at, key))
        else:
            yield (*at, key)
