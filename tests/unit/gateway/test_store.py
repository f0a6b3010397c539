"""The FIX session store: outbound messages found by seq across gaps, resets and reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.gateway import store as store_module
from procs.gateway.store import MessageStore, _SparseIndex


def test_outbound_by_seq_with_gaps_reset_and_reopen(tmp_path: Path) -> None:
    store = MessageStore(tmp_path)
    for seq in (1, 2, 3, 7, 8):  # 4..6 never stored (a gap fill, say)
        store.add_outbound(seq, b"m%d" % seq)
    assert store.outbound(2, 7) == [(2, b"m2"), (3, b"m3"), (7, b"m7")]
    store.close()
    reopened = MessageStore(tmp_path)
    assert reopened.outbound(1, 100) == [(s, b"m%d" % s) for s in (1, 2, 3, 7, 8)]
    assert reopened.next_out == 9
    reopened.reset()
    assert reopened.outbound(1, 100) == []
    reopened.add_outbound(1, b"again")
    assert reopened.outbound(1, 1) == [(1, b"again")]
    reopened.close()


def test_every_message_is_found_through_a_sparse_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_SparseIndex, "STRIDE", 4)
    monkeypatch.setattr(store_module, "_LOAD_CHUNK", 64)  # entries split across reads
    store = MessageStore(tmp_path)
    stored = [s for s in range(1, 60) if s % 7]  # gaps too
    for seq in stored:
        store.add_outbound(seq, b"m%d" % seq * (seq % 5 + 1))
    assert len(store._index.seqs) == (len(stored) + 3) // 4  # one per 4 messages
    for begin, end in ((1, 59), (5, 5), (7, 7), (13, 30), (50, 100)):
        want = [(s, b"m%d" % s * (s % 5 + 1)) for s in stored if begin <= s <= end]
        assert store.outbound(begin, end) == want
    store.close()
    with (tmp_path / "messages").open("ab") as f:
        f.write(b"\x09\x00\x00\x00\x3c")  # a torn entry: the crash came mid-write
    again = MessageStore(tmp_path)
    assert again.outbound(1, 100) == [(s, b"m%d" % s * (s % 5 + 1)) for s in stored]
    again.add_outbound(60, b"after")
    assert again.outbound(59, 60) == [(59, b"m59" * 5), (60, b"after")]
    again.close()
