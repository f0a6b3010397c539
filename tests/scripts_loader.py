"""The ops scripts under ``scripts/`` loaded as modules, for tests (they are not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).parents[1]


def load_script(name: str, prefix: str = "") -> ModuleType:
    """``scripts/<name>.py`` as module ``<prefix>_<name>`` (``<name>`` without a prefix): a
    prefix per test file gives each a module of its own, as each monkeypatches its own."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{prefix}_{name}" if prefix else name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
