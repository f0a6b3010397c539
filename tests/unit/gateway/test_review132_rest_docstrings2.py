"""Review 132, part 2: the docstrings of ``rest_named.py``, ``rest_interest.py``,
``rest_wiring.py``, ``order_fields.py`` (with ``fix44.json``, the dictionary it reads),
``order_state.py``, ``rest_connections.py`` and ``stream_slots.py`` held to the code (the
convention, and the disagreements found: ``..._docstrings.py``). In-process: review 126's
``_Rig`` (a ``RestApi`` never started, over a real ``RestOrders`` core), review 112's FIX
``Rig`` (an ``OrderEntry`` and a stand-in session), and pure functions with small inputs.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from procs.common.records import Accepted, OrderDone, Trade, WatchBalances
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, OrdType, Side, TimeInForce
from procs.gateway import api_errors as codes
from procs.gateway import order_fields as of
from procs.gateway import rest_connections, rest_interest, rest_named, stream_slots
from procs.gateway.notional_note import notional_note
from procs.gateway.order_state import Order
from procs.gateway.rest_balances import LEASE_MS
from procs.gateway.rest_connections import RestConnections
from procs.gateway.rest_wiring import RestWiring
from procs.gateway.session_stores import fix_descriptors
from procs.gateway.stream_slots import StreamSlots
from tests.unit.gateway.test_review112_readme_fix2 import SYM, Rig, message, order
from tests.unit.gateway.test_review126_rest_docstrings import ALICE, _Rig, _says, placed, run

SPEC = json.loads((Path(of.__file__).parent / "fix44.json").read_text())["fields"]


def _enum(tag: int) -> set[str]:
    return set(SPEC[str(tag)][2])


# -- rest_named.py ------------------------------------------------------------------------------


class _History:
    """The history database: each query asked recorded, answered ``row``."""

    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self.row, self.asked = row, []  # type: ignore[var-annotated]

    async def _answer(self, what: tuple[Any, ...]) -> tuple[Any, ...] | None:
        self.asked.append(what)
        return self.row

    def order_by_client_id(self, account: int, symbol: int, client_id: str) -> Any:
        return self._answer(("by client id", account, symbol, client_id))

    def order(self, account: int, oid: int) -> Any:
        return self._answer(("by id", account, oid))


def _row(order_id: int, client_id: str) -> tuple[Any, ...]:
    return (order_id, *[None] * 17, client_id)  # a History order row: 18 is client_order_id


def test_an_unknown_client_id_names_the_order_the_database_files_a_nul_is_not_asked(
    tmp_path: Path,
) -> None:
    """rest_named.py: "an id this gateway no longer remembers still names its order";
    ``_filable``: "no other is looked for there (a NUL, say ...)"; ``named_order``: "(its
    ``orderId``; the order not known here: None)"."""
    _says(rest_named, "an id this gateway no longer remembers still names its order")
    _says(rest_named._filable, "no other is looked for there (a NUL, say")
    rig = _Rig(tmp_path)
    history = _History(_row(42, "c1"))
    rig.api.history = history  # type: ignore[assignment]
    named = rig.api.named_order
    assert run(named(ALICE, {"origClientOrderId": "c1"}, 1)) == (42, None)
    assert history.asked == [("by client id", ALICE, 1, "c1")]
    assert run(named(ALICE, {"origClientOrderId": "a\x00b"}, 1)) == (None, None)
    assert run(named(ALICE, {"origClientOrderId": "\u00e9t\u00e9"}, 1)) == (None, None)
    assert len(history.asked) == 1  # neither asked of the database
    assert run(named(ALICE, {"orderId": "42", "origClientOrderId": "c1"}, 1)) == (42, None)
    with pytest.raises(codes.ApiError) as err:
        run(named(ALICE, {"orderId": "42", "origClientOrderId": "c2"}, 1))
    assert "orderId 42 and origClientOrderId 'c2' do not name the same order" in str(
        err.value.body()
    )


def test_a_cancel_refused_unknown_of_an_order_that_ended_is_too_late(tmp_path: Path) -> None:
    """``refuse_if_ended``: "refuse it saying so, as FIX says "too late", rather than "unknown
    order"" -- only for a refusal as unknown (``NOT_YOURS``)."""
    _says(rest_named.NamedOrders.refuse_if_ended, 'as FIX says "too late", rather than "unknown')
    rig = _Rig(tmp_path)
    status, _, _ = run(placed(rig, rig.key(), 77))
    assert status == 200
    rig.api.refuse_if_ended(ALICE, 77, ResultCode.UNKNOWN_ORDER, "cancel")  # open: not refused
    rig.feed(OrderDone(900, time.time_ns(), 9, 0, 0, ALICE, 1, 77, DoneReason.CANCELLED, 0, 100))
    rig.api.refuse_if_ended(ALICE, 77, ResultCode.INVALID_ORDER, "cancel")  # not "unknown"
    with pytest.raises(codes.ApiError) as err:
        rig.api.refuse_if_ended(ALICE, 77, ResultCode.NOT_ORDER_OWNER, "cancel")
    body = err.value.body()
    assert body["code"] == codes.CANCEL_REJECTED
    assert "is CANCELED: too late to cancel" in str(body["msg"])


# -- rest_interest.py ---------------------------------------------------------------------------


def _watches(rig: _Rig, account: int) -> list[int]:
    return [r.lease_ms for r in rig.out if isinstance(r, WatchBalances) and r.account == account]


def test_interest_watches_balances_renewed_every_third_of_the_lease(tmp_path: Path) -> None:
    """rest_interest.py: "its balances watched (the watch renewed every third of its lease)";
    ``tick``: "a stream is a use too"; once its interest ends the watch ends (lease 0)."""
    _says(rest_interest, "its balances watched (the watch renewed every third of its lease)")
    _says(rest_interest.RestInterest.tick, "a stream is a use too")
    rig = _Rig(tmp_path)
    core, now = rig.core, 1_000.0
    core.touch(999, 3, now)
    assert _watches(rig, 999) == [LEASE_MS]
    core.tick(now + LEASE_MS / 3000 - 0.01)
    assert _watches(rig, 999) == [LEASE_MS]
    core.tick(now + LEASE_MS / 3000)
    assert _watches(rig, 999) == [LEASE_MS] * 2
    core.streaming.add(999)
    core.tick(now + core.interest_s + 1)
    assert 999 in core.interest
    core.streaming.discard(999)
    core.tick(now + core.interest_s + 1)
    assert 999 not in core.interest and 999 not in core.sessions
    assert _watches(rig, 999)[-1] == 0


def test_forgetting_an_account_keeps_its_api_orders_and_drops_those_seen_on_the_rings(
    tmp_path: Path,
) -> None:
    """rest_interest.py: "once its interest ends the core forgets what it followed of it, but
    for the orders placed through the API, kept until they finish"; "those its user placed
    over FIX on this gateway before included"."""
    _says(rest_interest, "but for the orders placed through the API, kept until they finish")
    _says(rest_interest, "those its user placed over FIX on this gateway before included")
    rig = _Rig(tmp_path)
    sym = rig.cfg.symbols[0]
    fix = Order(5, 3, b"f1", b"", sym, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 100, 0, 10,
                order_id=66, leaves=10, status=b"0")  # fmt: skip
    rig.core.fix_orders = lambda session: [fix] if session == 3 else []
    rig.core.touch(ALICE, 3, time.monotonic())
    assert rig.core.order(ALICE, 66) is not None  # its FIX order, followed
    assert run(placed(rig, rig.key(), 77))[0] == 200
    rig.feed(Accepted(950, time.time_ns(), 9, 1, 5, ALICE, 1, 88, Side.SELL, 500, 10))
    assert rig.core.order(ALICE, 88) is not None  # seen on the rings
    rig.core.tick(time.monotonic() + rig.core.interest_s + 5)
    assert ALICE not in rig.core.interest
    assert rig.core.order(ALICE, 88) is None and rig.core.order(ALICE, 66) is None
    assert rig.core.order(ALICE, 77) is not None


# -- rest_wiring.py -----------------------------------------------------------------------------


def test_wiring_makes_no_api_without_rest_and_finds_a_fix_order_live_or_finished(
    tmp_path: Path,
) -> None:
    """``_rest_api``: "The REST API where the gateway serves one"; ``_fix_order``: "live by
    its id, or finished by its command's ref"."""
    _says(RestWiring._fix_order, "live by its id, or finished by its command's ref")
    rig = _Rig(tmp_path)
    gw = msgspec.structs.replace(rig.cfg.gateways[0], rest=None)
    assert RestWiring._rest_api(SimpleNamespace(), rig.cfg, gw) is None  # type: ignore[arg-type]
    live = Order(1, 3, b"a", b"", SYM, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 1, 0, 1, 10)
    done = Order(2, 3, b"b", b"", SYM, Side.BUY, OrdType.LIMIT, TimeInForce.GTC, 1, 0, 1, 11)
    entry = SimpleNamespace(by_id={10: live}, finished_orders={2: (done, [])}, finished_ids={})
    wiring: Any = SimpleNamespace(entry=entry)
    assert RestWiring._fix_order(wiring, 10, 1) is live
    assert RestWiring._fix_order(wiring, 11, 2) is done
    assert RestWiring._fix_order(wiring, 12, 2) is None  # the ref's order is another
    entry.finished_ids[11] = 2  # by its id: a Replaced names the replace's ref (review 253)
    assert RestWiring._fix_order(wiring, 11, 7) is done


# -- order_fields.py and fix44.json --------------------------------------------------------------


def test_the_code_tables_hold_fix44s_values() -> None:
    """order_fields.py: "the code tables of OrdType and TimeInForce, the OrdRejReason,
    CxlRejReason and OrdStatus values it answers with"; ``ORD_REJ_REASON``: "FIX 4.4 has no
    value for a price off the tick (18, Invalid price increment, came with FIX 5.0)" -- each
    one of ``fix44.json``'s."""
    _says(of, "FIX 4.4 has no value for a price off the tick (18, Invalid price increment")
    _says(of, "the code tables of OrdType and TimeInForce, the OrdRejReason, CxlRejReason")
    assert {str(v) for v in of.ORD_REJ_REASON.values()} | {"11", "99"} <= _enum(103)
    assert "18" not in _enum(103)
    cxl = (of.CXL_TOO_LATE, of.CXL_UNKNOWN, of.CXL_EXCHANGE, of.CXL_PENDING, of.CXL_DUPLICATE)
    assert {str(v) for v in (*cxl, of.CXL_OTHER)} <= _enum(102)
    assert {v.decode() for v in of.FINISHED} <= _enum(39)
    assert {k.decode() for k in of.ORD_TYPES} <= _enum(40)
    assert {k.decode() for k in of.TIFS} <= _enum(59)
    assert {v.decode() for v in of.DERIVATIVES} <= _enum(167)  # "FIX 4.4"


def test_ord_rej_reason_values_are_the_ones_named_in_the_comments() -> None:
    """``ORD_REJ_REASON``: "2,  # Exchange closed", "3,  # Order exceeds limit", "13,  #
    Incorrect quantity" -- FIX 4.4's meanings of 1, 2, 3, 6, 13, 15 for the codes mapped."""
    _says(of, "ResultCode.SYMBOL_HALTED: 2, # Exchange closed")
    r = ResultCode
    assert of.ORD_REJ_REASON == {
        r.UNKNOWN_SYMBOL: 1, r.SYMBOL_HALTED: 2, r.INSUFFICIENT_BALANCE: 3,
        r.TOO_MANY_OPEN_ORDERS: 3, r.NOTIONAL_TOO_LARGE: 3, r.DUPLICATE_CLIENT_ORDER_ID: 6,
        r.INVALID_QTY: 13, r.QTY_NOT_ON_LOT: 13, r.QTY_OUT_OF_RANGE: 13, r.UNKNOWN_ACCOUNT: 15,
    }  # fmt: skip
    assert of.Fault("x").reason == 99  # "99, Other, unless FIX 4.4 has a value for it"


def test_the_report_layout_is_the_one_its_comment_lists() -> None:
    """``REPORT``: "37 11 [41] 17 150 39 55 54 40 59 38 [44] [99] [18] [111] 151 14 6 60, then
    the extra fields"."""
    _says(of, "37 11 [41] 17 150 39 55 54 40 59 38 [44] [99] [18] [111] 151 14 6 60")
    opt = [b"41=o\x01", b"44=1\x01", b"99=2\x01", b"18=6\x01", b"111=3\x01"]
    body = of.REPORT % (b"1", b"c", opt[0], 1, b"x", b"0", b"0", b"S", 1, b"2", b"1", b"5",
                        *opt[1:], b"5", b"0", b"0", b"T", b"58=t\x01")  # fmt: skip
    tags = [int(p.split(b"=")[0]) for p in body.split(b"\x01")[:-1]]
    assert tags == [37, 11, 41, 17, 150, 39, 55, 54, 40, 59, 38, 44, 99, 18, 111,
                    151, 14, 6, 60, 58]  # fmt: skip


def test_mass_reports_echo_the_request_and_a_refusal_is_531_0_with_532_and_58() -> None:
    """``mass_refused``: "An OrderMassCancelReport's body refusing the request: 531=0,
    MassCancelRejectReason (532) ``reason`` and ``text``"; ``mass_report``: "``transact``: its
    TransactTime (60) field"."""
    _says(of.mass_refused, "531=0, MassCancelRejectReason (532) ``reason`` and ``text``")
    f = {11: b"m1", 530: b"1", 55: b"BTC-USD"}
    body = of.mass_refused(f, 1, "no", b"60=T\x01")
    fields = dict(p.split(b"=") for p in body.split(b"\x01")[:-1])
    assert fields == {b"37": b"MC-m1", b"11": b"m1", b"530": b"1", b"531": b"0", b"60": b"T",
                      b"55": b"BTC-USD", b"532": b"1", b"58": b"no"}  # fmt: skip


def _order(**kw: Any) -> Order:
    base: dict[str, Any] = {"ref": 1, "session": 5, "cl_ord_id": b"o", "orig_cl_ord_id": b"",
                            "symbol": SYM, "side": Side.BUY, "ord_type": OrdType.LIMIT,
                            "tif": TimeInForce.GTC, "price": 10_000, "stop_price": 0,
                            "qty": 100, "order_id": 9}  # fmt: skip
    return Order(**{**base, **kw})


def _g(*extra: tuple[int, object], tif: int | None = 1) -> Any:
    pairs = [(41, "o"), (55, "BTC-USD"), (54, 1), (40, 2), (38, "1"), (44, "100"), *extra]
    return message("G", *pairs, *([(59, tif)] if tif is not None else []))


def test_a_replace_must_restate_symbol_side_type_exec_inst_tif_and_the_sessions_account() -> None:
    """``differs``: "it must repeat the order's Symbol and Side, and a replace its OrdType (a
    replace changes only price and size); an Account or Currency it gives must be the
    session's and the symbol's"; a replace without TimeInForce is Day."""
    _says(of.differs, "it must repeat the order's Symbol and Side, and a replace its OrdType")
    o = _order()
    assert of.differs(_g(), o, 7) is None
    for msg, said in (
        (_g((1, "8")), "Account (1) 8 is not this session's account 7"),
        (_g((15, "EUR")), "Currency (15) EUR is not BTC-USD's quote currency USD"),
        (message("G", (55, "ETH-USD"), (54, 1), (40, 2)), "Symbol ETH-USD is not the order's"),
        (message("G", (55, "BTC-USD"), (54, 2), (40, 2)), "Side 2 is not the order's side 1"),
        (message("G", (55, "BTC-USD"), (54, 1), (40, 1)), "OrdType 1 is not the order's OrdType 2"),
        (_g((18, "6")), "ExecInst 6 is not the order's ExecInst (none)"),
        (_g(tif=None), "TimeInForce 0 (none: Day) is not the order's TimeInForce 1"),
    ):
        assert said in (of.differs(msg, o, 7) or ""), said
    assert of.differs(_g((18, "6")), _order(post_only=True), 7) is None


def test_order_fault_is_11_for_what_ringex_does_not_act_on_15_for_another_account() -> None:
    """``order_fault``: "a field ringex does not act on (OrdRejReason 11), another account or
    currency (``foreign``)"; ``foreign``: Account (1) "the account number the exchange gave
    the session" (15), Currency (15) 11."""
    _says(of.order_fault, "a field ringex does not act on (OrdRejReason 11)")
    new = message("D", *order("o1"))
    assert of.order_fault(new, SYM, 7) is None
    for extra, reason, said in (
        ((110, "1"), 11, "MinQty (110) is not supported"),
        ((167, "FUT"), 11, "ringex trades the symbol itself"),
        ((1, "8"), 15, "Account (1) 8"),
        ((15, "EUR"), 11, "Currency (15) EUR"),
    ):
        fault = of.order_fault(message("D", *order("o1", extra)), SYM, 7)
        assert fault is not None and fault.reason == reason and said in fault.text, extra


def test_a_mass_cancel_narrowed_by_side_account_or_another_field_is_refused() -> None:
    """``mass_narrowed``: "Why a mass cancel is refused for a field that narrows it past what
    ringex acts on ... or names another account"; ``_MASS_CANCEL_READ``: "Any other field FIX
    4.4 defines for it narrows what it cancels"."""
    _says(of.mass_narrowed, "Why a mass cancel is refused for a field that narrows it past")
    base = ((11, "m"), (530, 1), (60, "20260101-00:00:00"))
    assert of.mass_narrowed(message("q", *base, (55, "BTC-USD"), (526, "x"), (1, "7")), 7) is None
    for extra, said in (
        ((54, 1), "Side (54) 1 on a mass cancel is not supported"),
        ((1, "8"), "Account (1) 8"),
        ((336, "X"), "TradingSessionID (336) narrows the mass cancel"),
    ):
        assert said in (of.mass_narrowed(message("q", *base, extra), 7) or ""), extra


def test_a_replace_may_not_change_stop_px_or_max_floor() -> None:
    """``replace_fault``: "a StopPx or MaxFloor that differs from the order's is refused,
    never dropped in silence"."""
    _says(of.replace_fault, "a StopPx or MaxFloor that differs from the order's is refused")
    o = _order(ord_type=OrdType.STOP_LIMIT, stop_price=9_000, display=50)
    assert of.replace_fault(_g(), o, 9_000, 50) is None
    assert "MaxFloor (111) absent is not the order's" in (of.replace_fault(_g(), o, 9_000, 0) or "")
    assert "StopPx (99) 91 is not the order's 90.00" in (
        of.replace_fault(_g((99, "91")), o, 9_100, 50) or ""
    )


def test_refusal_notes_say_why_where_the_code_alone_does_not() -> None:
    """``refusal_note``: "a replace is judged at its new price"; a stop not triggered: "cancel
    it and send a new one"; ``OUT_OF_BAND_NOTES`` by type, a stop with a Price adding "or past
    its Price (44), the worst it may trade at"; "" elsewhere."""
    _says(of.refusal_note, 'why, where the code alone does not say ("" elsewhere)')
    o = _order()
    capped = _order(ord_type=OrdType.STOP, stop_price=9_000, price=0)  # judged at its cap
    note = of.refusal_note(b"G", capped, ResultCode.NOTIONAL_TOO_LARGE, 10**6, price=20_000)
    assert note == notional_note(10**6, SYM, Side.BUY, OrdType.STOP, 20_000)
    assert note.endswith("judged at its price") and "its cap" in of.refusal_note(
        b"D", capped, ResultCode.NOTIONAL_TOO_LARGE, 10**6, price=20_000
    )
    stop = _order(ord_type=OrdType.STOP, stop_price=9_000, price=8_000)
    assert "cancel it and send a new one" in of.refusal_note(b"G", stop, ResultCode.INVALID_ORDER)
    band = of.refusal_note(b"D", stop, ResultCode.PRICE_OUT_OF_BAND)
    tail = ", or past its Price (44), the worst it may trade at"
    bands = {"limit_band_bps": SYM.limit_band_bps, "band_bps": SYM.band_bps}  # filled in
    assert band == of.OUT_OF_BAND_NOTES[OrdType.STOP].format(**bands) + tail
    assert of.refusal_note(b"G", stop, ResultCode.PRICE_OUT_OF_BAND) == of.OUT_OF_BAND_NOTES[
        OrdType.LIMIT
    ].format(**bands)  # fmt: skip
    assert of.refusal_note(b"D", o, ResultCode.INSUFFICIENT_BALANCE) == ""


def test_only_a_resting_limit_may_be_an_iceberg_or_post_only() -> None:
    """``cannot_rest``: "an iceberg (MaxFloor) and a post-only order (ExecInst 6) must be able
    to"; ``cannot_post``: "applies to a limit order (OrdType 2), not a stop-limit (4)"."""
    _says(of.cannot_post, "applies to a limit order (OrdType 2), not a stop-limit (4)")
    assert of.cannot_rest({40: b"2"}, OrdType.LIMIT) is None  # no TimeInForce: Day, rests
    assert "OrdType 1 does not rest" in (of.cannot_rest({40: b"1"}, OrdType.MARKET) or "")
    assert "TimeInForce 3 does not rest" in (of.cannot_rest({59: b"3"}, OrdType.LIMIT) or "")
    assert of.cannot_post({40: b"4"}, OrdType.STOP_LIMIT) == (
        "applies to a limit order (OrdType 2), not a stop-limit (4)"
    )
    assert (of.cannot_post({59: b"4"}, OrdType.LIMIT) or "").startswith("needs an order that")


def _amounts(*extra: tuple[int, object], drop: tuple[int, ...] = (), typ: int = 2,
             filled: int = 0) -> Any:  # fmt: skip
    pairs = [(t, v) for t, v in order("o", tif=1) if t not in (*drop, 40)] + [(40, typ)]
    kinds = {2: OrdType.LIMIT, 1: OrdType.MARKET, 3: OrdType.STOP, 4: OrdType.STOP_LIMIT}
    return of.amounts(message("D", *pairs, *extra), SYM, kinds[typ], filled=filled)


def test_amounts_are_units_at_the_symbols_scale() -> None:
    """``amounts``: "Price, stop price, quantity and display quantity in units" (SYM: two
    price and two size decimals) -- trailing zeros, a leading dot, a market order's worst
    price."""
    _says(of.amounts, "Price, stop price, quantity and display quantity in units")
    assert _amounts() == (10_000, 0, 100, 0)
    assert _amounts((44, ".5"), (38, "2.5000"), drop=(44, 38)) == (50, 0, 250, 0)
    assert _amounts((111, "1.00"), (38, "3"), drop=(38,)) == (10_000, 0, 300, 100)
    assert _amounts(drop=(44,), typ=1) == (0, 0, 100, 0)
    assert _amounts(typ=1) == (10_000, 0, 100, 0)  # a market order's worst price
    assert _amounts((99, "99.5"), typ=4) == (10_000, 9_950, 100, 0)


@pytest.mark.parametrize(
    ("extra", "drop", "typ", "reason", "said"),
    [
        ((), (38,), 2, 13, "OrderQty (38) is required"),
        (((38, "0.001"),), (38,), 2, 13, "quantity 0.001 is not a multiple of lot 0.01"),
        (((38, "-1"),), (38,), 2, 13, "quantity -1 must be positive"),
        (((38, "1001"),), (38,), 2, 13, "OrderQty (38) 1001 is outside the symbol's limits"),
        ((), (44,), 2, 99, "Price (44) is required for OrdType 2"),
        (((44, "100.001"),), (44,), 2, 99, "price 100.001 is not a multiple of tick 0.01"),
        (((44, "-0"),), (44,), 2, 99, "price -0 must be positive"),
        ((), (), 3, 99, "StopPx (99) is required for OrdType 3"),
        (((99, "1.001"),), (), 3, 99, "StopPx 1.001 is not a multiple of tick"),
        (((99, "90"),), (), 2, 99, "StopPx (99) 90 applies to OrdType 3 or 4"),
        (((111, "0.5"),), (), 2, 13, "MaxFloor (111) 0.5 is below the symbol's min 1.00"),
        (((111, "2"),), (), 2, 99, "MaxFloor 2 is above OrderQty 1"),
    ],
)
def test_amounts_refuse_naming_the_value_13_for_order_qtys_own_faults(
    extra: tuple[tuple[int, object], ...], drop: tuple[int, ...], typ: int, reason: int, said: str
) -> None:
    """``amounts``: "or why not (with the OrdRejReason a new order's refusal carries: 13 for
    OrderQty's own faults)"; instruments.py: "A value the symbol cannot represent is refused
    with a message that names it and the step"."""
    _says(of.amounts, "13 for OrderQty's own faults")
    fault = _amounts(*extra, drop=drop, typ=typ)
    assert isinstance(fault, of.Fault) and said in fault.text and fault.reason == reason, fault


def test_a_max_floor_cuts_what_is_left_into_at_most_iceberg_parts() -> None:
    """``amounts``: "a replace's: the slices of what is left" (``filled``), "(the matcher's
    count)"; a MaxFloor "needs an order that rests"."""
    _says(of.amounts, "a replace's: the slices of what is left")
    parts = SYM.iceberg_parts
    qty = f"{parts + 1}"  # parts + 1 slices of 1.00: one too many, but for a fill of one
    fault = _amounts((111, "1"), (38, qty), drop=(38,))
    assert isinstance(fault, of.Fault) and f"into {parts + 1} parts, at most {parts}" in fault.text
    assert _amounts((111, "1"), (38, qty), drop=(38,), filled=100)[3] == 100
    ioc_d = [p for p in order("o", (111, "1"), tif=3) if p[0] != 38] + [(38, "2")]
    ioc = of.amounts(message("D", *ioc_d), SYM, OrdType.LIMIT)  # (MaxFloor below OrderQty)
    assert isinstance(ioc, of.Fault) and "needs an order that rests" in ioc.text


# -- order_state.py ------------------------------------------------------------------------------


def test_an_orders_state_pending_new_then_new_partly_and_wholly_filled() -> None:
    """order_state.py ``Order``: "OrdStatus: pending new until Accepted"; ``qty``: "total order
    quantity in lots (cum + leaves)"; ``notional``: "sum of price x qty of fills"; ``time_ns``
    "its Accepted's"; ``updated_ns``: "the exchange's time of its last fill"."""
    _says(Order, 'status: bytes = b"A" # OrdStatus: pending new until Accepted')
    _says(Order, "qty: int # total order quantity in lots (cum + leaves)")
    rig = Rig()
    new = rig.new(*order("s1"))
    o = rig.entry.orders[new.client_ref]
    assert (o.status, o.order_id) == (b"A", 0)
    rig.seq += 1
    rig.event(Accepted(rig.seq, 111, 3, new.session, new.client_ref, 7, 1, 501, side=new.side,
                       price=new.price, qty=new.qty))  # fmt: skip
    assert (o.status, o.order_id, o.leaves, o.time_ns) == (b"0", 501, 100, 111)
    for seq, ts, qty, leaves in ((950, 222, 40, 60), (951, 333, 60, 0)):
        rig.event(Trade(seq, ts, seq, 1, 10_000, qty, Side.SELL, 501, 7, 3, leaves, 77, 8, 4, 0))
        assert o.cum + o.leaves == o.qty == 100 and o.updated_ns == ts
    assert (o.status, o.cum, o.notional) == (b"2", 100, 100 * 10_000)


# -- rest_connections.py, stream_slots.py --------------------------------------------------------


def test_fitted_connections_are_the_most_whose_stream_locks_fit_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``_fit_connections``: "n connections take n + 2 min(n, streams) descriptors" -- the
    most n that fit the room the descriptors leave, and at least one."""
    _says(RestConnections._fit_connections, "n connections take n + 2 min(n, streams)")
    for room, wanted, streams in ((40, 100, 10), (20, 100, 10), (29, 100, 10), (500, 100, 10),
                                  (2, 100, 10), (50, 30, 40)):  # fmt: skip
        monkeypatch.setattr(
            rest_connections, "connections_room", lambda n, warn, r=room: r + fix_descriptors(2)
        )
        ns: Any = SimpleNamespace(
            gw=SimpleNamespace(max_sessions=2),
            rest=SimpleNamespace(max_connections=wanted, max_streams=streams),
        )
        RestConnections._fit_connections(ns)
        fits = [n for n in range(1, wanted + 1) if n + 2 * min(n, streams) <= room]
        assert ns.max_connections == max(fits, default=1), (room, wanted, streams)


class _Transport:
    def __init__(self) -> None:
        self.out, self.closed = b"", False

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_head_left_unfinished_past_the_body_timeout_is_408_and_closed() -> None:
    """``_unfinished``: "unless a request of it reaches the middleware within the body
    timeout, it is answered 408 and closed"."""
    _says(RestConnections._unfinished, "it is answered 408 and closed")
    late, served = _Transport(), _Transport()
    ns: Any = SimpleNamespace(_heads={late})
    RestConnections._head_overdue(ns, late, "a head")  # type: ignore[arg-type]
    RestConnections._head_overdue(ns, served, "a head")  # type: ignore[arg-type]
    assert late.out.startswith(b"HTTP/1.1 408") and late.closed and b"a head" in late.out
    assert served.out == b"" and not served.closed


def test_stream_slot_files_stay_and_a_slot_is_given_back_once(tmp_path: Path) -> None:
    """stream_slots.py: "A file no stream holds is removed by ``prune``" (review 151: they
    stayed, of every key that ever streamed); ``StreamSlot``: "``release`` gives them back
    (once)"."""
    _says(stream_slots, "A file no stream holds is removed by ``prune``")
    _says(stream_slots.StreamSlot, "``release`` gives them back (once)")
    slots = StreamSlots(tmp_path, 2, 1)
    slot = slots.take("k", 7)
    assert not isinstance(slot, str)
    other = os.open(os.devnull, os.O_RDONLY)  # would take a closed descriptor's number
    slot.release()
    slot.release()
    os.fstat(other)  # still open: the second release closed nothing
    os.close(other)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and all((tmp_path / f).stat().st_size == 0 for f in files)
    assert not isinstance(slots.take("k", 7), str)
    assert slots.prune() == 0 and len(list(tmp_path.iterdir())) == 2  # held: they stay
