"""The value a config error is about. msgspec names the path and the limit ("Expected `int`
>= 1 - at `$.symbols[0].tick`") but not the value it refused, nor, in a table keyed by
process name (``supervisor.nice``), which key: this finds them in the TOML as loaded, so
the message says ``symbols[0].tick = 0 (symbol 'BTC-USD')``."""

from __future__ import annotations

import enum
import operator
import re
import types
import typing
from collections.abc import Callable
from typing import Any

import msgspec

_PATH = re.compile(r" - at `\$([^`]*)`$")
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+|\.\.\.)\]")
_BOUND = re.compile(r"Expected `[^`]+` (>=|<=|>|<) (-?[0-9.]+(?:e[+-]?[0-9]+)?)")  # 1e-06 too
_GOT = re.compile(r", got `(\w+)`")
#: How msgspec names a TOML value's type in "got `...`".
_TYPE_NAMES: dict[type, str] = {
    bool: "bool",
    int: "int",
    float: "float",
    str: "str",
    list: "array",
    dict: "object",
}
_HOLDS: dict[str, Callable[[Any, Any], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}


def with_value(message: str, raw: object) -> str:
    """``message`` (a msgspec validation error) with ``: <key> = <value> (<whose>)`` added
    where its path leads to one value of ``raw`` that is not a table; else as it was."""
    found = _PATH.search(message)
    if found is None:
        return message
    candidates = _resolve(raw, found[1], "", "")
    if len(candidates) > 1:  # a table keyed by name: the entries the limit refuses, the first
        # in the table's order where several do, as msgspec stops at the first (review 134)
        candidates = [c for c in candidates if _breaks(message, c[1])][:1]
    if len(candidates) != 1 or isinstance(candidates[0][1], dict):
        return message
    where, value, whose = candidates[0]
    return f"{message}: {where} = {_shown(value)}{f' ({whose})' if whose else ''}"


def _resolve(node: object, path: str, where: str, whose: str) -> list[tuple[str, Any, str]]:
    """Every (key as written, value, whose) that ``path`` (msgspec's, after ``$``) reaches."""
    if not path:
        return [(where, node, whose)]
    step = _STEP.match(path)
    if step is None:
        return []
    rest = path[step.end() :]
    name, index = step[1], step[2]
    if name is not None:
        if not isinstance(node, dict) or name not in node:
            return []
        return _resolve(node[name], rest, f"{where}.{name}" if where else name, whose)
    if index == "...":  # a key of a table, which msgspec does not name
        if not isinstance(node, dict):
            return []
        found = []
        for key, value in node.items():
            found += _resolve(value, rest, f"{where}[{key!r}]", whose)
        return found
    if not isinstance(node, list) or int(index) >= len(node):
        return []
    item = node[int(index)]
    if not whose and isinstance(item, dict) and isinstance(item.get("name"), str):
        whose = f"{where.rsplit('.', 1)[-1].removesuffix('s')} {item['name']!r}"
    return _resolve(item, rest, f"{where}[{index}]", whose)


def _breaks(message: str, value: object) -> bool:
    """Whether ``value`` breaks the bound ``message`` states (true where it states none, or
    for a value that is not a number at all), or is of the type it says it got."""
    got = _GOT.search(message)
    if got is not None:
        return _TYPE_NAMES.get(type(value)) == got[1]
    bound = _BOUND.search(message)
    if bound is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return not _HOLDS[bound[1]](value, float(bound[2]))


def _shown(value: object) -> str:
    """A value as TOML writes it (near enough for a message), cut to ``SHOWN`` characters."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return cut_values(repr(value))


#: The most characters of a refused value a message shows (review 142: a 5,000-character
#: value was echoed whole, twice).
SHOWN = 80
_LONG = re.compile(rf"(['\"]?)([^'\"\s]{{{SHOWN}}})[^'\"\s]+\1")
#: A quoted value, spaces and all: its opening quote not after a word character, its closing
#: one not before one (the prose between two quoted values is not taken for one)
_QUOTED = re.compile(rf"(?<!\w)(['\"])([^'\"\n]{{{SHOWN}}})[^'\"\n]+\1(?!\w)")


def cut_values(text: str) -> str:
    """``text`` with every run of more than ``SHOWN`` characters (a value msgspec or this
    module echoes), or quoted value of more (spaces in it: review 263), cut to its first
    ``SHOWN`` and "..."."""
    text = _QUOTED.sub(lambda m: f"{m[1]}{m[2]}...{m[1]}", text)
    return _LONG.sub(lambda m: f"{m[1]}{m[2]}...{m[1]}", text)


def choices_note(message: str, schema: type) -> str:
    """Where ``message`` (a msgspec validation error) refuses a value of a fixed set
    (``Literal``, ``Enum``) of ``schema``, "; one of ..." naming the values allowed, which
    msgspec does not; else ""."""
    found = _PATH.search(message)
    if not message.startswith("Invalid enum value") or found is None:
        return ""
    choices = _choices(_field_type(schema, found[1]))
    return f"; one of {', '.join(map(repr, choices))}" if choices else ""


def _field_type(node: Any, path: str) -> Any:
    """The annotation that ``path`` (msgspec's, after ``$``) reaches from ``node``, a Struct
    type; None where it leads nowhere."""
    while path:
        node = _unwrapped(node)
        step = _STEP.match(path)
        if step is None:
            return None
        path = path[step.end() :]
        if step[1] is not None:
            fields = {f.name: f.type for f in _struct_fields(node)}
            node = fields.get(step[1])
        else:  # an item of a list, or a value of a table
            args = typing.get_args(node)
            node = args[-1] if args else None
        if node is None:
            return None
    return node


def _struct_fields(node: Any) -> tuple[msgspec.structs.FieldInfo, ...]:
    if isinstance(node, type) and issubclass(node, msgspec.Struct):
        return msgspec.structs.fields(node)
    return ()


def _unwrapped(node: Any) -> Any:
    """``node`` without ``Annotated`` and ``| None`` around it."""
    while True:
        origin = typing.get_origin(node)
        if origin is typing.Annotated:
            node = typing.get_args(node)[0]
        elif origin in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(node) if a is not type(None)]
            if len(inner) != 1:
                return node
            node = inner[0]
        else:
            return node


def _choices(node: Any) -> list[object]:
    node = _unwrapped(node)
    if typing.get_origin(node) is typing.Literal:
        return list(typing.get_args(node))
    if isinstance(node, type) and issubclass(node, enum.Enum):
        return [member.value for member in node]
    return []
