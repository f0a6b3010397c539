"""A session's store of outbound messages is cut to its newest half past ``max_bytes``
(``MessageStore._trim``), never cutting a message parked for a logged-off session."""

from __future__ import annotations

from pathlib import Path

from procs.gateway.store import MessageStore


def _raw(seq: int) -> bytes:
    return b"8=FIX.4.4\x019=99\x0135=8\x0134=%d\x01" % seq + b"58=" + b"x" * 200 + b"\x01"


def test_parked_messages_are_never_cut(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "s", max_bytes=1 << 20)
    try:
        store.add_outbound(1, _raw(1))
        for seq in range(2, 20_001):  # the session logged off at 2: all parked since
            store.park(seq, _raw(seq))
            if seq % 100 == 0:
                store.flush()
        store.flush()
        assert store.parked_from == 2
        kept = store.outbound(2, 20_000)
        assert [seq for seq, _ in kept] == list(range(2, 20_001))  # every parked one
    finally:
        store.close()


def test_a_store_within_its_bound_is_left_whole(tmp_path: Path) -> None:
    store = MessageStore(tmp_path / "s", max_bytes=1 << 20)
    try:
        for seq in range(1, 1_001):
            store.add_outbound(seq, _raw(seq))
        store.flush()
        assert [seq for seq, _ in store.outbound(1, 1_000)] == list(range(1, 1_001))
    finally:
        store.close()
