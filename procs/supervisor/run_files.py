"""An instance's run directory, ``var/<instance>/run``: what a running instance says of
itself (``status.json``, the processes' logs, a promotion request). Light on purpose: the
ops scripts (``scripts/failover.py``) read it without importing the supervisor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from config.schema import RingexConfig


def run_dir(cfg: RingexConfig) -> Path:
    return Path(cfg.var_dir) / cfg.instance / "run"


def status_path(cfg: RingexConfig) -> Path:
    return run_dir(cfg) / "status.json"


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object a process writes whole (renamed over), or None while there is none."""
    try:
        doc = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def read_status(cfg: RingexConfig) -> dict[str, Any] | None:
    """``status.json`` as the supervisor last wrote it, or None."""
    return read_json(status_path(cfg))
