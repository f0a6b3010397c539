"""A hostile review of the inline sweep's neighbours (commits b734c6d, 1028e49), split from
``test_review9_sweep.py``: the matcher's routes by symbol across restores, unknown symbols
and replays, ``encode_window``'s failing index, and every record built without ``*``
unpacking checked field by field."""

from __future__ import annotations

import itertools
import random
from typing import cast

import msgspec
import pytest

from config.schema import AssetConfig, SymbolConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    Accepted,
    BookLevel,
    CancelOrder,
    NewOrder,
    OrderDone,
    Record,
    Rejected,
    ReplaceOrder,
    Trade,
)
from procs.common.result_codes import ResultCode
from procs.common.types import (
    DoneReason,
    OrdType,
    Side,
    StpMode,
    TimeInForce,
)
from procs.core.book import Book
from procs.core.engine import Matcher
from procs.core.fast_book import FastBook
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import SymbolSpec
from procs.gateway.fix import FixMessage
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.rest_orders import RestOrders
from procs.gateway.rest_params import new_order
from procs.gateway.session import Session
from shm.errors import EncodeError
from tests.unit.matcher.sweep_rig import (
    BUY,
    DAY,
    FILLED,
    GTC,
    IOC,
    LIMIT,
    NO_STP,
    SELL,
    SPEC,
    Feed,
    run,
)

# -- the matcher: routes by symbol -------------------------------------------------------------


def test_restored_matcher_routes_to_its_restored_books_and_keeps_matching() -> None:
    specs = [SymbolSpec(symbol=1), SymbolSpec(symbol=2, tick=5, lot=2, min_qty=2)]
    rng = random.Random(7)
    seq = itertools.count(1)

    def cmd(symbol: int, oid: int, side: Side, price: int, qty: int, acct: int) -> NewOrder:
        s = next(seq)
        head = (s, s, 1, acct, s, acct, symbol, oid)
        return NewOrder(*head, side, LIMIT, GTC, 0, NO_STP, price, qty, 0, 0)

    before = [
        cmd(1, 1, SELL, 100, 10, 2), cmd(1, 2, SELL, 101, 10, 3),
        cmd(2, 3, BUY, 500, 10, 2), cmd(2, 4, BUY, 495, 20, 4),
    ]  # fmt: skip
    fast, ref = Matcher(specs), Matcher(specs, ReferenceBook)
    assert fast.execute_all(before) == ref.execute_all(before)
    restored = Matcher.restore(specs, fast.snapshot())
    restored_ref = Matcher.restore(specs, ref.snapshot(), ReferenceBook)
    for symbol, handlers in restored._routes.items():
        for handler in handlers.values():
            assert handler.__self__ is restored.books[symbol]  # type: ignore[attr-defined]
    s = next(seq)
    after: list[Record] = [
        CancelOrder(s, s, 1, 3, s, 3, 1, 2),
        cmd(1, 10, BUY, 101, 15, 5),  # crosses the restored ask at 100
        cmd(2, 11, SELL, 495, 24, 6),  # crosses both restored bids
    ]
    for _ in range(200):  # more traffic on the restored books
        s = next(seq)
        symbol = rng.choice((1, 2))
        side = rng.choice((BUY, SELL))
        price = (100 + rng.randint(-3, 3)) if symbol == 1 else (500 + 5 * rng.randint(-3, 3))
        qty = rng.randint(1, 10) * (1 if symbol == 1 else 2)
        tif = rng.choice((GTC, IOC))
        acct = rng.randint(1, 3)
        head = (s, s, 1, 1, s, acct, symbol, 100 + s)
        after.append(NewOrder(*head, side, LIMIT, tif, 0, StpMode.NONE, price, qty, 0, 0))
    got = restored.execute_all(after)
    assert got == restored_ref.execute_all(after)
    assert got == fast.execute_all(after)  # the matcher never restored agrees
    assert isinstance(got[0], OrderDone) and got[0].reason == DoneReason.CANCELLED
    assert restored.state_hash() == restored_ref.state_hash() == fast.state_hash()
    for book in restored.books.values():
        book.validate_internal_state()


def test_restore_leaves_no_route_to_the_empty_books_it_started_from() -> None:
    specs = [SymbolSpec(symbol=1)]
    m = Matcher(specs)
    m.execute(NewOrder(1, 1, 1, 1, 1, 1, 1, 1, SELL, LIMIT, GTC, 0, NO_STP, 100, 5, 0, 0))
    restored = Matcher.restore(specs, m.snapshot())
    events = restored.execute(
        NewOrder(2, 2, 1, 2, 2, 2, 1, 2, BUY, LIMIT, IOC, 0, NO_STP, 100, 5, 0, 0)
    )
    assert [type(e) for e in events] == [Accepted, Trade, OrderDone, BookLevel, OrderDone]
    assert not restored.books[1].orders and restored.books[1].next_trade_id == 2
    assert m.books[1].orders  # the original is untouched


@pytest.mark.parametrize("book_cls", [FastBook, ReferenceBook])
def test_matcher_answers_unknown_symbols_and_skips_replays(book_cls: type[Book]) -> None:
    m = Matcher([SymbolSpec(symbol=1), SymbolSpec(symbol=3)], book_cls)
    commands: list[Record] = [
        NewOrder(5, 50, 2, 8, 77, 9, 2, 0, BUY, LIMIT, GTC, 0, NO_STP, 100, 1, 0, 0),
        CancelOrder(6, 60, 2, 8, 78, 9, 2, 4),
        ReplaceOrder(7, 70, 2, 8, 79, 9, 2, 4, 100, 2),
    ]
    for cmd in commands:
        (rejected,) = m.execute(cmd)
        assert rejected == Rejected(
            cmd.seq, cmd.ts_ns, 2, 8, cmd.client_ref, 9, 2, cmd.order_id,  # type: ignore[attr-defined]
            ResultCode.UNKNOWN_SYMBOL,
        )  # fmt: skip
    assert m.last_seq == 7
    assert (
        m.execute(NewOrder(7, 1, 1, 1, 1, 1, 1, 1, BUY, LIMIT, GTC, 0, NO_STP, 100, 1, 0, 0)) == []
    )
    ok = m.execute(NewOrder(8, 1, 1, 1, 1, 1, 3, 1, BUY, LIMIT, GTC, 0, NO_STP, 100, 1, 0, 0))
    assert [type(e) for e in ok] == [Accepted, BookLevel]
    assert m.books[3].orders and not m.books[1].orders


def test_matcher_differential_with_snapshots_mid_stream() -> None:
    """Two symbols through a FastBook matcher and a ReferenceBook matcher, each restored from
    its own snapshot every 300 commands: the same events throughout."""
    specs = [SymbolSpec(symbol=1, max_qty=100), SymbolSpec(symbol=2, max_qty=100, band_bps=100)]
    rng = random.Random(99)
    fast, ref = Matcher(specs), Matcher(specs, ReferenceBook)
    nid = 0
    for s in range(1, 1501):
        symbol = rng.choice((1, 2))
        acct = rng.randint(1, 4)
        book = ref.books[symbol]
        r = rng.random()
        cmd: Record
        if r < 0.6 or not book.orders:
            nid += 1
            side = rng.choice((BUY, SELL))
            price = 100 + rng.randint(-6, 6)
            stp = rng.choice([StpMode.NONE] * 4 + [StpMode.CANCEL_OLDEST])
            display = rng.choice((0, 0, 0, 2))
            tif = rng.choice((GTC, GTC, IOC, DAY))
            if display and tif == IOC:
                tif = GTC
            cmd = NewOrder(s, s, 1, acct, s, acct, symbol, nid, side, LIMIT, tif, 0, stp, price,
                           rng.randint(1, 12), 0, display)  # fmt: skip
        elif r < 0.8:
            o = book.orders[rng.choice(list(book.orders))]
            cmd = ReplaceOrder(s, s, 1, o.account, s, o.account, symbol, o.order_id,
                               100 + rng.randint(-6, 6), rng.randint(1, 15))  # fmt: skip
        else:
            o = book.orders[rng.choice(list(book.orders))]
            cmd = CancelOrder(s, s, 1, o.account, s, o.account, symbol, o.order_id)
        assert fast.execute(cmd) == ref.execute(cmd), f"command {s}"
        if s % 300 == 0:
            fast = Matcher.restore(specs, fast.snapshot())
            ref = Matcher.restore(specs, ref.snapshot(), ReferenceBook)
            assert fast.state_hash() == ref.state_hash()
    assert fast.state_hash() == ref.state_hash()


# -- encode_window names the failing item ------------------------------------------------------


@pytest.mark.parametrize("bad", [0, 1, 3])
@pytest.mark.parametrize("start", [0, 1])
def test_encode_window_names_the_item_that_failed_and_writes_those_before(
    bad: int, start: int
) -> None:
    codec = RecordCodec()
    slot = codec.slot_size
    items: list[Record] = [BookLevel(k + 1, 10, 1, BUY, 100 + k, 5, 1) for k in range(4)]
    items[bad] = BookLevel(9, 10, 1, BUY, 100, 2**64, 1)  # does not encode
    buf = bytearray(slot * (len(items) + start))
    with pytest.raises(EncodeError, match=rf"item {bad} of the window: .*qty") as info:
        codec.encode_window(buf, start * slot, items, 3)
    assert info.value.published == bad
    view = memoryview(buf)
    assert codec.decode_window(view, start * slot, bad) == items[:bad]
    oversized = BookLevel(9, 10, 1, BUY, 100, 5, 2**40)  # a U32 past its bound: too long
    items[bad] = oversized
    try:
        codec.encode_window(bytearray(slot * (len(items) + start)), start * slot, items, 3)
    except EncodeError as exc:
        assert exc.published == bad and f"item {bad} of the window" in str(exc)


# -- records built without * unpacking ---------------------------------------------------------


def test_book_records_put_every_value_in_its_field() -> None:
    f = Feed(SPEC.symbol)
    cmds = [
        f.new(1, SELL, 100, 5, account=2),
        f.new(2, BUY, 100, 8, account=3),  # partly fills, rests 3
        f.cancel(2, account=3),
        f.new(3, BUY, 90, 0, account=3),  # a reject
    ]
    events, _ = run(SPEC, cmds)
    accepted = events[1][0]
    assert isinstance(accepted, Accepted)
    assert msgspec.structs.asdict(accepted) == {
        "seq": 2, "ts_ns": 20, "gateway": 2, "session": 33, "client_ref": 1002, "account": 3,
        "symbol": SPEC.symbol, "order_id": 2, "side": BUY, "price": 100, "qty": 8,
        "ord_type": OrdType.LIMIT, "tif": TimeInForce.GTC, "flags": 0, "stop_price": 0,
        "display_qty": 0,
    }  # fmt: skip
    trade = events[1][1]
    assert isinstance(trade, Trade)
    assert msgspec.structs.asdict(trade) == {
        "seq": 2, "ts_ns": 20, "trade_id": 1, "symbol": SPEC.symbol, "price": 100, "qty": 5,
        "aggressor": BUY, "maker_order_id": 1, "maker_account": 2, "maker_gateway": 2,
        "maker_leaves": 0, "taker_order_id": 2, "taker_account": 3, "taker_gateway": 2,
        "taker_leaves": 3,
    }  # fmt: skip
    maker_done = events[1][2]
    assert msgspec.structs.asdict(maker_done) == {
        "seq": 2, "ts_ns": 20, "gateway": 2, "session": 32, "client_ref": 1001, "account": 2,
        "symbol": SPEC.symbol, "order_id": 1, "reason": FILLED, "filled_qty": 5,
        "leaves_qty": 0,
    }  # fmt: skip
    cancelled = events[2][0]
    assert msgspec.structs.asdict(cancelled) == {
        "seq": 3, "ts_ns": 30, "gateway": 4, "session": 43, "client_ref": 3003, "account": 3,
        "symbol": SPEC.symbol, "order_id": 2, "reason": DoneReason.CANCELLED,
        "filled_qty": 5, "leaves_qty": 3,
    }  # fmt: skip
    (rejected,) = events[3]
    assert msgspec.structs.asdict(rejected) == {
        "seq": 4, "ts_ns": 40, "gateway": 2, "session": 33, "client_ref": 1004, "account": 3,
        "symbol": SPEC.symbol, "order_id": 3, "code": ResultCode.QTY_OUT_OF_RANGE,
    }  # fmt: skip


def test_gateways_build_new_and_replace_records_with_every_value_in_its_field() -> None:
    """The REST and FIX gateways' NewOrder/ReplaceOrder, now built from listed arguments."""
    sym = SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, base="BTC")
    out: list[Record] = []
    refs = itertools.count(100)
    assets = [AssetConfig(name="USD", id=1, decimals=4), AssetConfig(name="BTC", id=2, decimals=2)]
    rest = RestOrders(3, Instruments([sym]), assets, out, lambda: next(refs))
    params = {"symbol": "BTC-USD", "side": "SELL", "type": "LIMIT", "price": "101.50",
              "quantity": "2.25", "icebergQty": "0.75"}  # fmt: skip
    ref = rest.new_order(new_order(params, rest.instruments), 11, 6, 555)
    (cmd,) = [c for c in out if isinstance(c, NewOrder)]
    assert msgspec.structs.asdict(cmd) == {
        "seq": 0, "ts_ns": 555, "gateway": 3, "session": 6, "client_ref": ref, "account": 11,
        "symbol": 1, "order_id": 0, "side": SELL, "ord_type": LIMIT, "tif": GTC, "flags": 0,
        "stp": cmd.stp, "price": 10_150, "qty": 225, "stop_price": 0, "display_qty": 75,
        "client_id": b"r%d" % ref,  # the generated id the API answers with
    }  # fmt: skip
    rest.process(Accepted(40, 0, 3, 6, ref, 11, 1, 77, SELL, 10_150, 225))
    rest.end_of_batch()
    (live,) = rest.open_orders(11, None)
    amend_ref = rest.amend(11, 6, live, 10_200, 300)
    replace = out[-1]
    assert isinstance(replace, ReplaceOrder)
    fields = msgspec.structs.asdict(replace)
    del fields["ts_ns"]
    assert fields == {
        "seq": 0, "gateway": 3, "session": 6, "client_ref": amend_ref, "account": 11,
        "symbol": 1, "order_id": 77, "price": 10_200, "order_qty": 300,
        "client_id": b"",  # an amend keeps the order's filed id (review 87)
    }  # fmt: skip

    class Conn:
        session_id, account, user, closed = 5, 7, None, False

        def send(self, msg_type: bytes, body: bytes, now_ns: int) -> None:
            pass

    entry = OrderEntry(9, Instruments([sym]), cancel_on_disconnect=False)
    conn = cast(Session, Conn())
    entry.on_logon(conn, 1)
    tags = [35, 11, 55, 54, 60, 40, 38, 44, 59]
    values = [b"D", b"c1", b"BTC-USD", b"2", b"20260101-00:00:00", b"2", b"1.5", b"100.25", b"1"]
    entry.on_message(conn, FixMessage.of(b"", tags, values), 2)
    (new,) = [c for c in entry.outgoing if isinstance(c, NewOrder)]
    assert msgspec.structs.asdict(new) == {
        "seq": 0, "ts_ns": 2, "gateway": 9, "session": 5, "client_ref": new.client_ref,
        "account": 7, "symbol": 1, "order_id": 0, "side": SELL, "ord_type": LIMIT, "tif": GTC,
        "flags": 0, "stp": StpMode.NONE, "price": 10_025, "qty": 150, "stop_price": 0,
        "display_qty": 0, "client_id": b"c1",
    }  # fmt: skip
    (order,) = entry.live.values()
    order.order_id = 21  # acknowledged
    order.status = b"0"
    tags = [35, 11, 41, 55, 54, 60, 40, 38, 44, 59]
    values = [b"G", b"c2", b"c1", b"BTC-USD", b"2", b"20260101-00:00:01", b"2", b"2", b"99.75",
              b"1"]  # fmt: skip
    entry.on_message(conn, FixMessage.of(b"", tags, values), 3)
    (rep,) = [c for c in entry.outgoing if isinstance(c, ReplaceOrder)]
    assert msgspec.structs.asdict(rep) == {
        "seq": 0, "ts_ns": 3, "gateway": 9, "session": 5, "client_ref": rep.client_ref,
        "account": 7, "symbol": 1, "order_id": 21, "price": 9_975, "order_qty": 200,
        "client_id": b"c2",  # the replace's ClOrdID: the order's from now on
    }  # fmt: skip
