"""Shared fixtures: every test gets its own shm instance name, removed afterwards."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from shm.inspect import remove_instance

_counter = itertools.count()


@pytest.fixture
def instance() -> Iterator[str]:
    name = f"t{os.getpid()}x{next(_counter)}"
    yield name
    remove_instance(name)
