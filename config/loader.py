"""Load a named profile (``config/profiles/<name>.toml``) or a file into ``RingexConfig``.

Unknown keys, wrong types and out-of-range values are errors that name the key and the value.
A symbol named BASE-QUOTE takes what it leaves out of `base` and `quote` from its name.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from config.refused_value import with_value
from config.schema import RingexConfig

PROFILES = Path(__file__).with_name("profiles")


class ConfigError(ValueError):
    """A profile or config file that does not load; the message names it and why."""


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILES.glob("*.toml"))


def load_profile(name_or_path: str) -> RingexConfig:
    """A profile by name ("dev", "test", "latency") or a path to a TOML file (with a suffix
    or a directory part). Any failure, a missing file included, is a ValueError naming it."""
    path = Path(name_or_path)
    if not path.suffix and "/" not in name_or_path:
        path = PROFILES / f"{name_or_path}.toml"
        if not path.exists():
            raise ConfigError(
                f"profile {name_or_path!r} is unknown; choose one of {profile_names()}"
            )
    raw: object = None
    try:
        raw = tomllib.loads(path.read_text())
        _pair_assets(raw.get("symbols"))
        return msgspec.convert(raw, RingexConfig)
    except msgspec.ValidationError as exc:  # its path and limit; the value, found in raw
        raise ConfigError(f"config {str(path)!r}: {with_value(str(exc), raw)}") from None
    except (tomllib.TOMLDecodeError, ValueError, OSError) as exc:
        raise ConfigError(f"config {str(path)!r}: {exc}") from None


def _pair_assets(symbols: object) -> None:
    """A symbol named BASE-QUOTE trades those assets unless it says otherwise: what it leaves
    out of ``base`` and ``quote`` is taken from its name ("SOL-USD": SOL against USD). Never
    the schema's defaults (BTC and USD) in silence: another name must set both."""
    if not isinstance(symbols, list):
        return  # the schema's own error says what is wrong
    for sym in symbols:
        if not isinstance(sym, dict) or ("base" in sym and "quote" in sym):
            continue
        name = sym.get("name")
        parts = name.split("-") if isinstance(name, str) else []
        if len(parts) != 2 or not all(parts):
            raise ValueError(
                f"symbol {name!r} does not set both base and quote, and its name is not "
                f"BASE-QUOTE: set base and quote (asset names)"
            )
        sym.setdefault("base", parts[0])
        sym.setdefault("quote", parts[1])
