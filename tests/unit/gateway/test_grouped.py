"""``GroupedDict`` keeps its groups in step with every write its users make (the REST open
orders by account, the FIX ones by session)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procs.gateway.grouped import GroupedDict
from procs.gateway.rest_order_state import LiveOrder


def order(order_id: int, account: int) -> LiveOrder:
    o = LiveOrder.__new__(LiveOrder)  # only what the index reads
    o.order_id, o.account = order_id, account
    return o


OPS = st.lists(
    st.tuples(st.sampled_from(["set", "del", "pop", "clear"]), st.integers(1, 8)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_the_index_is_the_orders_by_account(ops: list[tuple[str, int]]) -> None:
    live: GroupedDict[int, LiveOrder, int] = GroupedDict(lambda _oid, o: o.account)
    plain: dict[int, LiveOrder] = {}
    for op, oid in ops:
        if op == "set":  # an order is set again as it changes; its account never does
            live[oid] = plain[oid] = order(oid, oid % 3 + 1)
        elif op == "del" and oid in plain:
            del live[oid], plain[oid]
        elif op == "pop":
            assert live.pop(oid, None) is plain.pop(oid, None)
        elif op == "clear":
            live.clear()
            plain.clear()
        assert list(live) == list(plain) and all(live[k] is plain[k] for k in plain)
        for acct in (1, 2, 3):
            mine = [o for o in plain.values() if o.account == acct]
            assert [id(o) for o in live.of(acct)] == [id(o) for o in mine]
        assert all(live.groups.values())  # no account left with none


def test_writes_that_would_bypass_the_index_are_refused() -> None:
    live: GroupedDict[int, LiveOrder, int] = GroupedDict(lambda _oid, o: o.account)
    with pytest.raises(KeyError):
        live.pop(1)
    for write in (lambda: live.update({1: order(1, 1)}), live.popitem):
        with pytest.raises(NotImplementedError):
            write()
    with pytest.raises(NotImplementedError):
        live.setdefault(1, order(1, 1))
