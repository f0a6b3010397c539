"""A process module for test_held.py: ``main`` writes its first argument's file."""

from __future__ import annotations

from pathlib import Path


def main(argv: list[str]) -> int:
    Path(argv[0]).write_text("ran")
    return 3
