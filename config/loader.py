"""Load a named profile (``config/profiles/<name>.toml``) or a file into ``RingexConfig``.

Unknown keys, wrong types and out-of-range values are errors that name the key and the value.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

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
    try:
        raw = tomllib.loads(path.read_text())
        return msgspec.convert(raw, RingexConfig)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError, ValueError, OSError) as exc:
        raise ConfigError(f"config {str(path)!r}: {exc}") from None
