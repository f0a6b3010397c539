"""What the operator CLI's arguments take, beyond argparse's own: a number of seconds, a
whole number in ASCII digits (``int`` alone also takes "1_0" and any script's digits:
review 155, account "\u0667" was account 7), a name that is not empty (a script's unset
variable: review 275, ``--config ""`` was the dev profile), an option given at most once
(argparse keeps the last of two in silence: ``--amount 5 --amount 50`` deposited 50), an
instance name, and a value that begins with "-" (an API key id may)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Sequence
from typing import Any

from config.schema import INSTANCE_PATTERN

_WHOLE = re.compile(r"-?[0-9]+")


def ascii_int(text: str) -> int:
    """An argparse type: a whole number, an optional '-' and ASCII digits (at most 40)."""
    if len(text) > 40 or not _WHOLE.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise argparse.ArgumentTypeError(f"{shown!r} is not a whole number in ASCII digits")
    return int(text)


def named(text: str) -> str:
    """An argparse type: a name or path that is not empty ("" is an unset variable's)."""
    if not text:
        raise argparse.ArgumentTypeError("'' names nothing (an unset variable?)")
    return text


def instance(text: str) -> str:
    """An argparse type: an instance name as a config's ``instance`` takes (review 314:
    ``shm rm --instance a/b`` removed "0" segments and said so, exit 0)."""
    if not re.fullmatch(INSTANCE_PATTERN, text):
        shown = text if len(text) <= 60 else text[:60] + "..."
        raise argparse.ArgumentTypeError(
            f"{shown!r} is not an instance name: 1 to 48 of A-Z, a-z, 0-9, '_' and '-'"
        )
    return text


def seconds(text: str) -> float:
    """A ``--timeout``: a finite number of seconds, 0 or more (argparse's type)."""
    try:
        value = float(text)
    except ValueError:  # (review 155: argparse said "invalid _seconds value")
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


class Once(argparse.Action):
    """``store``, refusing a second giving of the option: a usage error naming it."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        given: set[str] = namespace.__dict__.setdefault("_given_once", set())
        if self.dest in given:
            parser.error(f"{option_string} is given twice: give it once")
        given.add(self.dest)
        setattr(namespace, self.dest, values)


#: Options whose value may begin with "-": an API key id does, one in 64 (argparse takes
#: such a value for an option unless it is joined to its option by "=").
DASHED_VALUES = ("--api-key",)


def dashed_values_joined(argv: list[str]) -> list[str]:
    """``argv`` with each of ``DASHED_VALUES`` joined to the value after it (by "=")."""
    out: list[str] = []
    it = iter(argv)
    for arg in it:
        value = next(it, None) if arg in DASHED_VALUES else None
        out.append(arg if value is None else f"{arg}={value}")
    return out
