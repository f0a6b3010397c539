"""Review 107: README.md's "## The matcher", its names and its orders, held to the code
mechanically: every order type, time in force, self-trade prevention mode, done reason and
result code it names is the code's, with the meaning it states, and every one the code defines
is documented; and every order behaviour it states that a few commands to a book (both books:
``FastBook`` and ``ReferenceBook``) can show is shown. Its commands are in
``test_review107_matcher_commands.py``.

Convention (as review 104's, shared helpers in ``readme_core_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly. A claim checked and found right is a plain test; a
disagreement was a strict xfail until fixed. Three were found here, all fixed: a done reason
and seven result codes defined that nothing issued (dropped, their numbers left unused), and
most issued result codes named nowhere in the README (now its "### Result codes" table).
Nothing here starts a process.
"""

from __future__ import annotations

import re

import msgspec
import pytest

from procs.common.records import (
    RECORD_TYPES,
    Accepted,
    BookLevel,
    OrderDone,
    Rejected,
    Replaced,
    SymbolStatus,
    Trade,
    Triggered,
)
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, OrderFlag, OrdType, StpMode, TimeInForce
from procs.core.symbols import SymbolSpec
from tests.unit.readme_core_claims import (
    BUY,
    FOK,
    IOC,
    MARKET,
    README,
    ROOT,
    SELL,
    SPEC,
    STOP,
    STOP_LIMIT,
    SYMBOL,
    Rig,
    _claim,
    _done,
    _of,
    _rejected,
    _trades,
    fixture_rig,  # noqa: F401  (the fixture rig)
)

# -- the matcher: names -----------------------------------------------------------------------


def test_order_types_tifs_and_stp_modes_are_the_codes() -> None:
    """README "## The matcher", Orders: limit (GTC, DAY, IOC, FOK, post-only), market,
    stop-market, stop-limit, iceberg, self-trade prevention "(cancel newest, oldest or both)":
    exactly ``OrdType``, ``TimeInForce``, ``StpMode`` (beside NONE) and ``OrderFlag.POST_ONLY``
    of procs/common/types.py."""
    _claim("limit (GTC, DAY, IOC, FOK, post-only); market")
    _claim("stop-market and stop-limit")
    _claim("self-trade prevention per account (cancel newest, oldest or both)")
    assert {t.name for t in OrdType} == {"LIMIT", "MARKET", "STOP", "STOP_LIMIT"}
    assert {t.name for t in TimeInForce} == {"GTC", "DAY", "IOC", "FOK"}
    assert {m.name for m in StpMode} == {"NONE", "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH"}
    assert OrderFlag.POST_ONLY == 1


def test_event_kinds_are_the_records() -> None:
    """README "## The matcher", Events: `Accepted`, `Rejected`, `Trade`, `OrderDone`,
    `Replaced`, `Triggered`, `SymbolStatus`, `BookLevel` (L2: side, price, size, order count):
    the records of tags 10..17, ``BookLevel``'s fields as said."""
    _claim("`Replaced`, `Triggered`, `SymbolStatus` and `BookLevel` (L2: side, price, size, order")
    events = {Accepted, Rejected, Trade, OrderDone, Replaced, BookLevel, Triggered, SymbolStatus}
    assert {t for t in RECORD_TYPES if 10 <= t.__struct_config__.tag <= 19} == events  # type: ignore[operator]
    assert BookLevel.__struct_fields__[-4:] == ("side", "price", "qty", "count")


def test_done_reasons_are_the_five_listed() -> None:
    """README "## The matcher", Events: "`OrderDone` (filled, cancelled, expired, self-trade,
    mass cancelled; with the remaining size)": ``DoneReason`` (procs/common/types.py) should
    be those five."""
    _claim("`OrderDone` (filled, cancelled, expired, self-trade, mass cancelled; with the")
    assert {r.name for r in DoneReason} == {
        "FILLED", "CANCELLED", "EXPIRED", "SELF_TRADE", "MASS_CANCELLED",
    }  # fmt: skip


def _issued() -> set[str]:
    """The result codes some module of ``procs`` (result_codes.py aside) names."""
    sources = [p.read_text() for p in (ROOT / "procs").rglob("*.py") if p.name != "result_codes.py"]
    return {c.name for c in ResultCode if any(re.search(rf"\b{c.name}\b", s) for s in sources)}


def test_no_code_is_defined_that_no_stage_issues() -> None:
    """procs/common/result_codes.py: every code is one some stage issues (named by a module
    of ``procs``); the FOK that cannot fill answers ``OrderDone(EXPIRED)`` (book.py), not
    ``Rejected(FOK_NOT_FILLABLE)``."""
    assert {c.name for c in ResultCode} - _issued() - {"OK"} == set()


def test_every_issued_result_code_is_named_in_readme() -> None:
    """procs/common/result_codes.py: every code a stage issues is named in the README (review
    107: 18 of 26 were named nowhere), and README's "### Result codes" table is the enum's
    codes, numbers and names, exactly."""
    missing = sorted(name for name in _issued() if name not in README)
    assert not missing, missing
    table = README[README.index("\n### Result codes\n") :]
    table = table[: table.index("\n## ")]
    rows = re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", table, re.M)
    assert [(int(n), name) for n, name in rows] == [
        (c.value, c.name) for c in ResultCode if c != ResultCode.OK
    ]


def test_rejected_codes_named_mean_what_readme_says() -> None:
    """README "## The matcher", Events: "`Rejected` (a result code: tick, lot, size, band,
    halted, unknown order, not the owner, ...)": each has a matcher-stage code
    (procs/common/result_codes.py, 3000-3999)."""
    _claim("`Rejected` (a result code: tick, lot, size, band, halted, unknown order, not the")
    for code in (
        ResultCode.PRICE_NOT_ON_TICK,
        ResultCode.QTY_NOT_ON_LOT,
        ResultCode.QTY_OUT_OF_RANGE,
        ResultCode.PRICE_OUT_OF_BAND,
        ResultCode.SYMBOL_HALTED,
        ResultCode.UNKNOWN_ORDER,
        ResultCode.NOT_ORDER_OWNER,
    ):
        assert code.stage == "matcher", code


def test_rejects_tick_lot_size_band(rig: Rig) -> None:
    """README "## The matcher": tick, lot, size and band refusals, on a book of tick 5, lot
    2, sizes 2..10 and a 10% collar (procs/core/order_checks.py ``_check_limit``,
    ``_check_qty``)."""
    spec = SymbolSpec(symbol=SYMBOL, tick=5, lot=2, min_qty=2, max_qty=10, limit_band_bps=1_000)
    r = Rig(type(rig.book), spec)
    assert _rejected(r.new(BUY, 101, 2)[1]) == ResultCode.PRICE_NOT_ON_TICK
    assert _rejected(r.new(BUY, 100, 3)[1]) == ResultCode.QTY_NOT_ON_LOT
    assert _rejected(r.new(BUY, 100, 12)[1]) == ResultCode.QTY_OUT_OF_RANGE
    r.new(SELL, 100, 2, account=8)
    r.new(BUY, 100, 2, account=9)  # last trade 100: the collar is 90..110
    assert _rejected(r.new(BUY, 115, 2)[1]) == ResultCode.PRICE_OUT_OF_BAND
    assert _rejected(r.new(BUY, 110, 2)[1]) is None


# -- the matcher: orders ----------------------------------------------------------------------


def test_market_order_banded_rest_cancelled(rig: Rig) -> None:
    """README "## The matcher": "market, protected by a price band (`band_bps` from the best
    opposite price; the rest is cancelled)": asks at 100, 105, 115 and a 10% band: a market buy
    takes 100 and 105 (its limit 110), and its rest is ``OrderDone(EXPIRED)``."""
    _claim("market, protected by a price band (`band_bps` from the best opposite price; the rest")
    for price in (100, 105, 115):
        rig.new(SELL, price, 1, account=2)
    _, events = rig.new(BUY, 0, 5, kind=MARKET, tif=IOC)
    assert [t.price for t in _trades(events)] == [100, 105]
    [done] = _done(events)[-1:]
    assert (done.reason, done.leaves_qty) == (DoneReason.EXPIRED, 3)


def test_triggered_stop_market_banded_from_trigger(rig: Rig) -> None:
    """README "## The matcher": "a triggered stop-market banded from its trigger price as
    venues bound it (from the best left after the sweep that reached it, a sell stop at 100
    could sell at 60 ...)": a sell stop at 99 (band 10%: down to 90) is reached by a trade at
    99, and sells nothing at the 60 bid left: it expires."""
    _claim("a triggered stop-market banded from its trigger price as venues bound it")
    rig.trade_at(100)
    rig.new(BUY, 60, 5, account=3)
    rig.new(BUY, 99, 1, account=3)
    stop, events = rig.new(SELL, 0, 5, kind=STOP, stop=99)
    assert _rejected(events) is None and not _trades(events)
    _, events = rig.new(SELL, 99, 1, account=4)  # trades at 99: reaches the stop
    assert [e.order_id for e in _of(events, Triggered)] == [stop]
    assert [t.price for t in _trades(events)] == [99]  # not 60
    [done] = [d for d in _done(events) if d.order_id == stop]
    assert (done.reason, done.filled_qty) == (DoneReason.EXPIRED, 0)


def test_stop_market_dead_on_arrival_refused(rig: Rig) -> None:
    """README "## The matcher": a stop-market "that triggers on arrival is refused where that
    band, and its cap, keep it from the best opposite price, `PRICE_OUT_OF_BAND` ..., or none
    rests, `NO_LIQUIDITY`" (order_checks.py ``_dead_on_arrival``); one the band lets trade is
    accepted and trades."""
    _claim("keep it from the best opposite price, `PRICE_OUT_OF_BAND` (the refusal's text names")
    _claim("or none rests, `NO_LIQUIDITY`: it could not trade)")
    rig.trade_at(100)
    assert _rejected(rig.new(SELL, 0, 1, kind=STOP, stop=100)[1]) == ResultCode.NO_LIQUIDITY
    rig.new(BUY, 60, 1, account=3)
    assert _rejected(rig.new(SELL, 0, 1, kind=STOP, stop=100)[1]) == ResultCode.PRICE_OUT_OF_BAND
    rig.new(BUY, 95, 1, account=3)
    _, events = rig.new(SELL, 0, 1, kind=STOP, stop=100)
    assert [t.price for t in _trades(events)] == [95]
    # its cap (a buy's worst price, the router's) keeps it too
    rig.new(SELL, 105, 1, account=3)
    code = _rejected(rig.new(BUY, 104, 1, kind=STOP, stop=95)[1])
    assert code == ResultCode.PRICE_OUT_OF_BAND


def test_waiting_stop_limit_collared_around_its_stop(rig: Rig) -> None:
    """README "## The matcher": "a waiting stop-limit's limit collared (`limit_band_bps`)
    around its stop price, where it will enter, not around today's": with a 10% collar and the
    last trade at 100, a buy stop at 200 limited at 205 is accepted (a plain limit at 205 is
    not), and one limited at 100 is refused."""
    _claim("a waiting stop-limit's limit collared (`limit_band_bps`) around its stop price, where")
    r = Rig(type(rig.book), msgspec.structs.replace(SPEC, limit_band_bps=1_000))
    r.trade_at(100)
    assert _rejected(r.new(BUY, 205, 1)[1]) == ResultCode.PRICE_OUT_OF_BAND
    assert _rejected(r.new(BUY, 205, 1, kind=STOP_LIMIT, stop=200)[1]) is None
    code = _rejected(r.new(BUY, 100, 1, kind=STOP_LIMIT, stop=200)[1])
    assert code == ResultCode.PRICE_OUT_OF_BAND


def test_stops_triggered_by_every_price_a_sweep_trades_at(rig: Rig) -> None:
    """README "## The matcher": stops are "triggered by the trade prices (every price a sweep
    trades at ...)": a sell stop at 100 is reached by a buy sweep that trades at 100 and then
    110, its last price above the stop."""
    _claim("triggered by the trade prices (every price a sweep trades at;")
    rig.trade_at(105)
    rig.new(BUY, 98, 1, account=3)
    stop, _ = rig.new(SELL, 0, 1, kind=STOP, stop=100)
    rig.new(SELL, 100, 1, account=2)
    rig.new(SELL, 110, 1, account=2)
    _, events = rig.new(BUY, 110, 2, account=4)
    assert [t.price for t in _trades(events)][:2] == [100, 110]
    assert [e.order_id for e in _of(events, Triggered)] == [stop]


def test_stops_reached_together_enter_in_arrival_order(rig: Rig) -> None:
    """README "## The matcher": "stops reached together enter in arrival order, and those a
    stop's own trades reach queue behind them": sell stops at 100 (first) and 101 (second),
    both reached by one trade at 99, trigger 100 first; a buy stop at 110 that the first
    stop's trade would not reach never triggers."""
    _claim("stops reached together enter in arrival order, and those a stop's own trades reach")
    rig.trade_at(105)
    first, _ = rig.new(SELL, 0, 1, kind=STOP, stop=100)
    second, _ = rig.new(SELL, 0, 1, kind=STOP, stop=101)
    for price in (99, 98, 97):
        rig.new(BUY, price, 1, account=3)
    _, events = rig.new(SELL, 99, 1, account=4)
    assert [e.order_id for e in _of(events, Triggered)] == [first, second]
    assert [t.price for t in _trades(events)] == [99, 98, 97]


def test_iceberg_refresh_goes_to_the_back(rig: Rig) -> None:
    """README "## The matcher": "iceberg (`display_qty`; a refreshed slice goes to the back of
    its level ...)": iceberg A (10, showing 2) then B (2) at 100; the first buy of 2 fills A's
    slice, the second fills B, not A's refresh."""
    _claim("iceberg (`display_qty`; a refreshed slice goes to the back")
    a, _ = rig.new(SELL, 100, 8, account=2, display=2)
    b, _ = rig.new(SELL, 100, 2, account=3)
    first = _trades(rig.new(BUY, 100, 2, account=4)[1])
    second = _trades(rig.new(BUY, 100, 2, account=4)[1])
    assert [t.maker_order_id for t in first + second] == [a, b]


def test_iceberg_parts_bound_new_and_replace(rig: Rig) -> None:
    """README "## The matcher": "at most `iceberg_parts` slices ..., a replace included":
    with ``iceberg_parts`` 4 an iceberg of 10 showing 2 (5 slices) is ``INVALID_QTY``, one of 8
    is taken, and a replace growing it to 10 is ``INVALID_QTY``."""
    _claim("at most `iceberg_parts` slices, so one taker makes a bounded number of trades")
    _claim("against it, a replace included")
    assert _rejected(rig.new(SELL, 100, 10, display=2)[1]) == ResultCode.INVALID_QTY
    oid, events = rig.new(SELL, 100, 8, display=2)
    assert _rejected(events) is None
    assert _rejected(rig.replace(oid, 100, 10)) == ResultCode.INVALID_QTY


@pytest.mark.parametrize(
    ("mode", "taker_done", "maker_done", "trades"),
    [
        (StpMode.CANCEL_NEWEST, DoneReason.SELF_TRADE, None, 0),
        (StpMode.CANCEL_OLDEST, DoneReason.FILLED, DoneReason.SELF_TRADE, 1),
        (StpMode.CANCEL_BOTH, DoneReason.SELF_TRADE, DoneReason.SELF_TRADE, 0),
    ],
)
def test_self_trade_prevention_modes(
    rig: Rig,
    mode: StpMode,
    taker_done: DoneReason,
    maker_done: DoneReason | None,
    trades: int,
) -> None:
    """README "## The matcher": self-trade prevention per account "(cancel newest, oldest or
    both)": account 1's own ask at 100 ahead of account 2's, and account 1 buys 1 at 100."""
    own, _ = rig.new(SELL, 100, 1, account=1)
    rig.new(SELL, 100, 1, account=2)
    taker, events = rig.new(BUY, 100, 1, account=1, stp=mode)
    done = {d.order_id: d.reason for d in _done(events)}
    assert done.get(taker) == taker_done
    assert done.get(own) == maker_done
    assert len(_trades(events)) == trades


def test_fok_counts_iceberg_reserve_not_stp_removed(rig: Rig) -> None:
    """README "## The matcher": "A FOK counts what the sweep will really take (an iceberg's
    reserve, not the orders self-trade prevention removes)": a FOK of 8 fills against an
    iceberg of 8 showing 2; a FOK of 4 under CANCEL_OLDEST, its own 2 ahead of another's 2,
    cannot fill and expires untraded (its own order kept)."""
    _claim("A FOK counts what the sweep will really take (an iceberg's reserve, not the orders")
    rig.new(SELL, 100, 8, account=2, display=2)
    oid, events = rig.new(BUY, 100, 8, account=3, tif=FOK)
    assert sum(t.qty for t in _trades(events)) == 8
    own, _ = rig.new(SELL, 100, 2, account=1)
    rig.new(SELL, 100, 2, account=2)
    oid, events = rig.new(BUY, 100, 4, account=1, tif=FOK, stp=StpMode.CANCEL_OLDEST)
    assert not _trades(events)
    assert [(d.order_id, d.reason) for d in _done(events)] == [(oid, DoneReason.EXPIRED)]
    assert own in rig.book.orders


def test_ioc_rest_expires(rig: Rig) -> None:
    """README "## The matcher", Orders/Events: an IOC takes what crosses and its rest is
    ``OrderDone(EXPIRED)`` with the remaining size (book.py's event order)."""
    rig.new(SELL, 100, 2, account=2)
    oid, events = rig.new(BUY, 100, 5, tif=IOC)
    [done] = [d for d in _done(events) if d.order_id == oid]
    assert (done.order_id, done.reason, done.filled_qty, done.leaves_qty) == (
        oid, DoneReason.EXPIRED, 2, 3,
    )  # fmt: skip


def test_post_only_refused_when_taking_and_stays_post_only(rig: Rig) -> None:
    """README "## The matcher": post-only; "a post-only order stays post-only when replaced (a
    crossing replace is refused, the order unchanged)": ``POST_ONLY_WOULD_TAKE`` both times."""
    _claim("a post-only order stays post-only when replaced (a crossing replace is")
    _claim("refused, the order unchanged)")
    rig.new(SELL, 100, 1, account=2)
    post = OrderFlag.POST_ONLY
    assert _rejected(rig.new(BUY, 100, 1, flags=post)[1]) == ResultCode.POST_ONLY_WOULD_TAKE
    oid, _ = rig.new(BUY, 99, 1, flags=post)
    before = rig.book.state_hash()
    assert _rejected(rig.replace(oid, 100, 1)) == ResultCode.POST_ONLY_WOULD_TAKE
    assert rig.book.state_hash() == before
