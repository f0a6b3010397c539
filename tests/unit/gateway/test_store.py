"""The FIX session store: outbound messages found by seq across gaps, resets and reopening."""

from __future__ import annotations

from pathlib import Path

import pytest

from procs.gateway.store import MessageStore, _Offsets


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


def test_the_index_reaches_back_a_bounded_number_of_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Offsets, "KEEP", 8)
    store = MessageStore(tmp_path)
    for seq in range(1, 41):
        store.add_outbound(seq, b"m%d" % seq)
    kept = [seq for seq, _raw in store.outbound(1, 40)]
    assert kept[-8:] == list(range(33, 41)) and 8 <= len(kept) <= 9  # older ones: gap-filled
    store.close()
