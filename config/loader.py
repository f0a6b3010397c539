"""Load a named profile (``config/profiles/<name>.toml``) or a file into ``RingexConfig``.

Unknown keys, wrong types and out-of-range values are errors that name the key and the value.
A symbol named BASE-QUOTE takes what it leaves out of `base` and `quote` from its name.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Final

import msgspec

from config.refused_value import choices_note, cut_values, with_value
from config.schema import RingexConfig

PROFILES = Path(__file__).with_name("profiles")


class ConfigError(ValueError):
    """A profile or config file that does not load; the message names it and why."""


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.toml"))


def load_profile(name_or_path: str) -> RingexConfig:
    """A profile by name ("dev", "test", "latency") or a path to a TOML file (with a suffix
    or a directory part). Any failure, a missing file included, is a ValueError naming it,
    a name or path past ``LONGEST`` characters cut to 80 (review 313: 5,000 characters of a
    script's runaway variable made a 10 kB line)."""
    path = Path(name_or_path)
    if not is_file_path(name_or_path):
        path = PROFILES / f"{name_or_path}.toml"
        try:
            known = path.exists()
        except OSError:  # a name longer than a file's (review 134: a traceback)
            known = False
        if not known:
            raise ConfigError(
                f"profile {_shown(name_or_path)} is unknown; choose one of {profile_names()}"
            )
    where = f"config {_shown(str(path))}"
    raw: object = None
    try:
        text = path.read_text().removeprefix("\ufeff")  # an editor's byte order mark (313)
        if why := _huge_literal(text):  # tomllib's int() refusal names no key
            raise ConfigError(f"{where}: {why}")
        raw = tomllib.loads(text)
        if not raw:  # a truncated deploy ran every default: instance "dev" (review 313)
            raise ConfigError(f"{where}: holds no setting; give its instance")
        _pair_assets(raw.get("symbols"))
        cfg = msgspec.convert(raw, RingexConfig)
        if why := _number_refused(raw):  # past what the schema bounds (a key's own bound
            raise ConfigError(f"{where}: {why}")  # names it first: above)
    except msgspec.ValidationError as exc:  # its path and limit; the value, found in raw
        message = with_value(cut_values(str(exc)), raw) + choices_note(str(exc), RingexConfig)
        raise ConfigError(f"{where}: {message}") from None
    except ConfigError:
        raise
    except OSError as exc:  # (its text names the path again)
        raise ConfigError(f"{where}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except RecursionError:  # arrays nested thousands deep: the parser's recursion
        raise ConfigError(f"{where}: nested too deeply to read") from None
    if why := _var_dir_refused(cfg.var_dir):  # else every command fails on its files
        raise ConfigError(f"{where}: var_dir = {cfg.var_dir!r} {why}")
    archive = cfg.journal.archive_dir
    if archive and (why := _var_dir_refused(archive)):  # else ``replay --archive`` fails
        raise ConfigError(f"{where}: journal.archive_dir = {archive!r} {why}")
    if cfg.database.dsn and (why := dsn_refused(cfg.database.dsn)):
        raise ConfigError(f"{where}: database.dsn: {why}")
    return cfg


#: A key's integer literal of more digits than int() converts (``sys.int_info``'s default
#: limit, 4300): the table above it and the key, for the refusal to name.
_HUGE = re.compile(
    r"^[ \t]*\[+[ \t]*([^\]\n]*?)[ \t]*\]+"  # a [table] or [[array of tables]]
    r"|^[ \t]*([^=\n#]+?)[ \t]*=[ \t]*[+-]?[0-9_]{4300}",  # key = <4300 digits>
    re.M,
)


def _shown(value: str) -> str:
    """``value`` quoted, cut to its first 80 characters past ``LONGEST`` (no real path is
    that long; a script's runaway variable is: review 313)."""
    return repr(value) if len(value) <= LONGEST else cut_values(repr(value))


#: The longest name or path a refusal shows whole (a path of 4,096 bytes is Linux's limit)
LONGEST: Final = 1024


def _huge_literal(text: str) -> str:
    """Why ``text`` holds an integer tomllib cannot read, naming its key and line ("" when
    none does): tomllib's own message ("Exceeds the limit (4300 digits) for integer string
    conversion") says neither (review 142)."""
    if not re.search(r"[0-9_]{4300}", text):  # the common case: one scan
        return ""
    table = ""
    for match in _HUGE.finditer(text):
        if match[1] is not None:
            table = match[1] + "."
            continue
        line = text.count("\n", 0, match.start()) + 1
        return (
            f"line {line}: {table}{match[2]} is an integer of 4,300 digits or more, past "
            f"what any key takes (int64: {2**63 - 1})"
        )
    return ""


def _var_dir_refused(var_dir: str) -> str:
    """Why ``var_dir`` cannot hold an instance's files, or "": not a directory, under a file
    (it could never be made), or a path the system refuses (review 134; a NUL, review 142:
    ``Path.exists`` says False of it)."""
    if "\x00" in var_dir:
        return "holds a NUL byte"
    try:
        path = Path(var_dir)
        if path.exists():
            return "" if path.is_dir() else "is not a directory"
        for parent in path.parents:
            if parent.exists():
                return (
                    "" if parent.is_dir() else f"is under {str(parent)!r}, which is not a directory"
                )
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror or exc})"
    return ""


def _number_refused(node: object, where: str = "") -> str:
    """Why a number of ``node`` (TOML as loaded) can be no key's, naming the key, or "": an
    integer past int64 (every count and size is one) or a float that is not finite (no key
    takes inf or nan for "never": review 142, where 2**64 and inf loaded)."""
    if isinstance(node, dict):
        items = [(f"{where}.{k}" if where else str(k), v) for k, v in node.items()]
    elif isinstance(node, list):
        items = [(f"{where}[{k}]", v) for k, v in enumerate(node)]
    elif isinstance(node, bool):
        return ""
    elif isinstance(node, int) and not -(2**63) <= node < 2**63:
        limit = f"<= {2**63 - 1}" if node > 0 else f">= {-(2**63)}"
        return f"{where} = {cut_values(str(node))} is past every key's integers ({limit})"
    elif isinstance(node, float) and not math.isfinite(node):
        return f"{where} = {node} is not a finite number"
    else:
        return ""
    return next((why for key, value in items if (why := _number_refused(value, key))), "")


def dsn_refused(dsn: str) -> str:
    """Why libpq cannot parse ``dsn`` (psycopg's parser: keywords or a URI), or "". Asked
    at load, not at the database writer's first connect."""
    from psycopg import ProgrammingError  # noqa: PLC0415 (only for a config with a dsn)
    from psycopg.conninfo import conninfo_to_dict  # noqa: PLC0415

    try:
        conninfo_to_dict(dsn)
    except ProgrammingError as exc:
        return str(exc).strip()
    return ""


def is_file_path(name_or_path: str) -> bool:
    """Whether ``load_profile`` takes ``name_or_path`` as a file (a suffix or a directory
    part), not as the name of a profile under config/profiles."""
    return bool(Path(name_or_path).suffix) or "/" in name_or_path


def _pair_assets(symbols: object) -> None:
    """A symbol named BASE-QUOTE trades those assets unless it says otherwise: what it leaves
    out of ``base`` and ``quote`` is taken from its name ("SOL-USD": SOL against USD). Never
    the schema's defaults (BTC and USD) in silence: another name must set both."""
    if not isinstance(symbols, list):
        return  # the schema's own error says what is wrong
    for sym in symbols:
        if not isinstance(sym, dict) or ("base" in sym and "quote" in sym):
            continue
        if not isinstance(sym.get("name"), str):
            continue  # the schema's own error says the name is missing or not a string
        name = sym.get("name")
        parts = name.split("-") if isinstance(name, str) else []
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"symbol {name!r} does not set both base and quote, and its name is not "
                f"BASE-QUOTE: set base and quote (asset names)"
            )
        sym.setdefault("base", parts[0])
        sym.setdefault("quote", parts[1])
