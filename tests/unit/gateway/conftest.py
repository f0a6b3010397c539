"""The gateway tests' usual exchange: ALICE (account 7) and BOB (account 8), both funded
(``test_rest.py`` defines its own, with REST keys and other balances)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.gateway.harness import Harness, config


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", 7)
    h.add_user("BOB", "secret", 8)
    h.fund(7)
    h.fund(8)
    yield h
    h.close()
