"""Issue 3's differential test at size: >= 100k random commands through both books."""

from __future__ import annotations

import pytest

from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from tests.unit.matcher.differential import SPEC, compare


@pytest.mark.stress
@pytest.mark.parametrize("seed", [7, 8])
def test_100k_commands_identical_events_and_state(seed: int) -> None:
    compare([ReferenceBook(SPEC), FastBook(SPEC)], seed=seed, count=100_000, check_every=5000)
