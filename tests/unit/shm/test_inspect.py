"""`ringex shm ls|rm` finds an instance's segments and removes the stale ones."""

from __future__ import annotations

import json
import multiprocessing as mp
import os

import pytest

from procs.cli import main
from shm import Ring, StructCodec
from shm.inspect import list_segments, remove_instance
from shm.wait import fifo_path


def _create_and_die(instance: str) -> None:
    ring = Ring.create(instance, "orphan", StructCodec("2q"), capacity=8, consumers=["c"])
    ring.producer().publish((1, 1))
    # exits without unlinking: a crashed instance


def test_ls_and_rm_stale(instance: str, capsys: pytest.CaptureFixture[str]) -> None:
    Ring.create(instance, "live", StructCodec("2q"), capacity=8)
    child = mp.get_context("fork").Process(target=_create_and_die, args=(instance,))
    child.start()
    child.join(10)
    by_name = {s.name: s for s in list_segments(instance)}
    assert set(by_name) == {"live", "orphan"}
    assert by_name["orphan"].stale and not by_name["live"].stale
    assert by_name["orphan"].cursor == 1 and by_name["orphan"].capacity == 8

    assert main(["shm", "ls", "--instance", instance, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {row["name"]: row["stale"] for row in listed} == {"live": False, "orphan": True}

    assert main(["shm", "rm", "--instance", instance, "--stale"]) == 0
    assert "removed" in capsys.readouterr().out
    assert [s.name for s in list_segments(instance)] == ["live"]
    assert main(["shm", "rm", "--instance", instance]) == 1  # live: skipped without --force
    assert [s.name for s in list_segments(instance)] == ["live"]
    assert main(["shm", "rm", "--instance", instance, "--force"]) == 0
    assert list_segments(instance) == []


def test_removing_an_instance_removes_its_watched_consumers_fifos(instance: str) -> None:
    """A watched consumer's FIFO (``Consumer.watch_fd``) lives beside its semaphore in
    /dev/shm; ``list_segments`` does not take it for a segment, and removing the instance
    (``ringex shm clean``'s path for a dead one) removes it with the semaphores."""
    ring = Ring.create(instance, "w", StructCodec("q"), capacity=16, consumers=["c"])
    consumer = ring.consumer("c")
    consumer.watch_fd()
    path = fifo_path(ring.consumer_sem_name(consumer.index))
    consumer.close()
    ring.close()
    assert os.path.exists(path)
    assert [s.name for s in list_segments(instance)] == ["w"]
    assert remove_instance(instance) == 1
    assert not os.path.exists(path)
