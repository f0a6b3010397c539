"""Typed, frozen configuration: a schema (``config.schema``), TOML profiles
(``config/profiles/*.toml``) and the loader that checks one against the other."""

from config.loader import load_profile, profile_names
from config.schema import RingConfig, RingexConfig, WaitConfig

__all__ = ["RingConfig", "RingexConfig", "WaitConfig", "load_profile", "profile_names"]
