"""Review 311: FIX 4.4 ExecutionReport conformance, field by field.

Reviewed: ``procs/gateway/order_replies.py`` (``_report``, ``_reject_new``,
``_send_cancel_reject``, ``mass_status``, ``status``, ``_transact``),
``procs/gateway/order_fields.py`` (``REPORT``, ``FIX_ORD_TYPE``, ``FIX_TIF``, ``CXL_*``,
``ORD_REJ_REASON``, ``mass_report``, ``mass_refused``, ``rested``, ``cannot_post``),
``procs/gateway/orders.py`` (``_new``, ``_named``, ``_cancel_replace``, ``_mass_cancel``,
``process``, ``_replaced``, ``_fill``, ``_accepted``, ``_done``, ``_rejected``),
``procs/gateway/fix.py`` (``Timestamps``), ``procs/gateway/fix44.json`` (QuickFIX's
FIX44.xml), against README's "The FIX gateway" section and FIX 4.4's field definitions.

Rig: ``harness.py``'s exchange (real rings, an in-process router and matcher, the real
gateway over TCP; ``conftest.harness``: ALICE 7, BOB 8), its simplefix ``Client`` subclassed
to keep every byte read (``RawClient``), so each message is checked as it came off the wire:
framing (8, 9, 35 first, 10 last), BodyLength, CheckSum, no repeated tag, every tag defined
for its MsgType in FIX44.xml, every enumerated value in FIX44.xml's enum (OrdRejReason,
CxlRejReason, CxlRejResponseTo, ExecType, OrdStatus, OrdType, TimeInForce, CommType,
ExecRestatementReason, MassCancelResponse, MassCancelRejectReason...), UTCTimestamps with
milliseconds, the required tags (8: 37 17 150 39 55 54 151 14 6; 9: 37 11 41 39 434;
r: 37 530 531), TransactTime 60 on every 8, 9 and r, ExecType/OrdStatus pairs from FIX 4.4's
state tables, LeavesQty + CumQty = OrderQty on live states and LeavesQty 0 on terminal ones,
LastPx and LastQty on every trade, AvgPx the VWAP of the LastPx/LastQty reported (cut to six
places), and the order's own fields (40 44 99 59 111 18) echoed as sent (``faults``,
``echo_faults``, ``avg_faults``).

Faults found: none. Every message of the scenarios below passed every check; the leads below
are what could not be pinned as a fault a FIX 4.4 engine would reject or misread, or
README documents.

Sound:
1. Each order kind the gateway takes (limit GTC/Day, IOC, FOK, market, stop, stop-limit,
   iceberg MaxFloor 111, post-only 18=6, SelfTradePreventionMode 25001=2), status H (known,
   unknown: 150=I 39=8), mass status AF (911/912), replace G (150=5 with 41), cancel F
   (150=4 with 41), cancel and replace of an unknown order (9: 102=1 434=1/2), the gateway's
   own refusals (GTD 103=11, off tick 99, ExecInst 5 103=11, post-only market 103=11,
   duplicate ClOrdID 103=6, size 103=13), the router's (insufficient balance 103=3,
   no reference price 99), a mass cancel q (r 531=7 then 150=4 per order): all conform, and
   25001 is never echoed (FIX44.xml does not define it; a stock QuickFIX would reject a
   report carrying it).
2. AvgPx over four partial fills at three prices is the VWAP cut to six places (100.025000,
   100.035714, 100.050000 after 0.30@100.00, 0.30@100.05, 0.10@100.10, 0.20@100.10), on
   both sides, CumQty the sum of LastQty, LeavesQty + CumQty = OrderQty at each.
3. Self-trade prevention 2/3/4, a post-only that would take (150=8 103=99
   POST_ONLY_WOULD_TAKE), an end of session (150=C 39=C for Day orders), a stop-market
   triggered with nothing to trade (150=D 378=99, then 150=4): all conform.
4. Two replaces and a cancel sent while the first replace waits, all naming the original
   ClOrdID: a status answer says 39=E, and the reports chain 41 through the previous
   accepted ClOrdID (o2 41=o1, o3 41=o2, o4 41=o3), as FIX 4.4's OrigClOrdID definition
   says ("ClOrdID of the previous accepted order").

Leads not shown:
- A fill (150=F) while a cancel or replace waits for its order says 39=1, while a status
  answer at the same moment says 39=6/E (FIX 4.4's OrdStatus precedence, which
  ``pending_status`` applies); README limits the pending states to status answers and
  cancel rejects (review 192), so not a fault here.
- The gateway's own refusals (``_reject_new``, order_replies.py:268) echo none of the
  order's 38/40/44/59, while the router's refusals (``_rejected``) echo all of them; FIX
  4.4 does not require them and QuickFIX does not check, so a client correlating by
  ClOrdID is not misled.
- A replace cutting an iceberg below its slice reports MaxFloor 111 above OrderQty 38
  (0.50 over 0.20); README documents the cut (review 217).
- The post-only refusal of a market order says "(a limit, 2, or stop-limit, 4, does)" rest,
  while a post-only stop-limit is refused too (``cannot_post``): wording only.
- The "no open order" mass-status report invents Side 54=1 and Symbol 55=NONE when the
  request named neither: valid by the dictionary.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from procs.common.types import AdminAction
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.test_gateway import cancel, order, run, status_request
from tests.unit.gateway.test_review192_exec_reports import admin

SOH = b"\x01"
SPEC = json.loads((Path(__file__).parents[3] / "procs/gateway/fix44.json").read_text())
FIELDS: dict[str, list[Any]] = SPEC["fields"]
MESSAGES: dict[str, list[Any]] = SPEC["messages"]
HEADER = {str(t) for t in SPEC["header"]} | {"10", "93", "89"}
REQUIRED = {
    "8": ("37", "17", "150", "39", "55", "54", "151", "14", "6"),
    "9": ("37", "11", "41", "39", "434"),
    "r": ("37", "530", "531"),
}
#: FIX 4.4's ExecType -> the OrdStatus values a report of it may carry.
PAIRS = {
    "0": {"0", "A"},
    "F": {"1", "2", "6", "E"},
    "4": {"4"},
    "5": {"0", "1", "2", "6", "E"},
    "8": {"8"},
    "C": {"C"},
    "D": {"0", "1", "2", "6", "E"},
    "3": {"3"},
    "6": {"6"},
    "E": {"E"},
}
TIMESTAMP = re.compile(rb"^\d{8}-\d{2}:\d{2}:\d{2}\.\d{3}$")


class RawClient(Client):
    """``Client``, keeping every byte it reads, to check BodyLength and CheckSum."""

    def __init__(self, comp_id: str) -> None:
        super().__init__(comp_id)
        self.raw = b""

    async def connect(self, port: int, *args: Any, **kw: Any) -> None:
        await super().connect(port, *args, **kw)
        append = self.parser.append_buffer

        def keep(data: bytes) -> None:
            self.raw += data
            append(data)

        self.parser.append_buffer = keep


async def on(port: int, comp: str = "ALICE") -> RawClient:
    c = RawClient(comp)
    await c.connect(port)
    await c.logon()
    return c


def frames(raw: bytes) -> list[bytes]:
    out = []
    while raw:
        end = raw.index(b"\x0110=") + 8
        out.append(raw[:end])
        raw = raw[end:]
    return out


def faults(raw: bytes) -> list[str]:
    """What a FIX 4.4 engine with the stock dictionary would object to in one message."""
    found = []
    pairs = [p.split(b"=", 1) for p in raw.rstrip(SOH).split(SOH)]
    tags = [t.decode() for t, _ in pairs]
    values = {t.decode(): v for t, v in pairs}
    if tags[:3] != ["8", "9", "35"] or tags[-1] != "10":
        found.append(f"framing {tags[:3]} .. {tags[-1]}")
    start = raw.index(SOH, raw.index(b"9=")) + 1
    body_end = raw.rindex(b"10=")
    if int(values["9"]) != body_end - start:
        found.append(f"BodyLength {values['9']!r} != {body_end - start}")
    if int(values["10"]) != sum(raw[:body_end]) % 256:
        found.append("CheckSum")
    if len(set(tags)) != len(tags):
        found.append(f"repeated tags {sorted(t for t in tags if tags.count(t) > 1)}")
    kind = values["35"].decode()
    if kind not in REQUIRED:
        return found
    allowed = HEADER | {str(t) for t in MESSAGES[kind][1]}
    for t in tags:
        if t not in allowed:
            found.append(f"tag {t} not defined for 35={kind}")
            continue
        name, fmt, enum = FIELDS[t]
        v = values[t]
        if enum and fmt != "MULTIPLEVALUESTRING" and v.decode() not in enum:
            found.append(f"{name} ({t}) = {v!r} not in {enum}")
        if fmt == "UTCTIMESTAMP" and not TIMESTAMP.match(v):
            found.append(f"{name} ({t}) = {v!r} not a UTC timestamp with ms")
    for t in REQUIRED[kind]:
        if t not in values:
            found.append(f"required {FIELDS[t][0]} ({t}) missing in 35={kind}")
    if "60" not in values:
        found.append("TransactTime (60) missing")
    if kind == "8":
        et, st = values.get("150", b"?").decode(), values.get("39", b"?").decode()
        if et in PAIRS and st not in PAIRS[et]:
            found.append(f"ExecType {et} with OrdStatus {st}")
        if et == "F" and not ("31" in values and "32" in values):
            found.append("a trade without LastPx/LastQty")
        leaves, cum = (
            Decimal(values.get("151", b"0").decode()),
            Decimal(values.get("14", b"0").decode()),
        )
        if st in ("2", "4", "C", "8", "3") and leaves != 0:
            found.append(f"LeavesQty {leaves} on a terminal OrdStatus {st}")
        live = st in ("0", "1", "6", "E") and "38" in values
        if live and leaves + cum != Decimal(values["38"].decode()):
            found.append(f"LeavesQty {leaves} + CumQty {cum} != OrderQty {values['38']!r}")
    return found


#: The order fields a report echoes, as a FIX 4.4 counterparty reads them back.
ECHOED = (40, 44, 99, 59, 111, 18)


class Sent:
    """What each ClOrdID was sent with (D, or G restating the order), for the echo checks."""

    def __init__(self) -> None:
        self.by_cl: dict[bytes, dict[int, bytes]] = {}

    def note(self, pairs: list[tuple[int, object]]) -> list[tuple[int, object]]:
        f = {t: str(v).encode() for t, v in pairs}
        f.setdefault(59, b"0")  # FIX 4.4: no TimeInForce is Day
        self.by_cl[f[11]] = f
        return pairs


def messages(c: RawClient) -> list[dict[int, bytes]]:
    return [
        {int(t): v for t, v in (p.split(b"=", 1) for p in raw.rstrip(SOH).split(SOH))}
        for raw in frames(c.raw)
    ]


def echo_faults(c: RawClient, sent: Sent) -> list[str]:
    """Reports on an order that do not say the order's own fields as sent."""
    found = []
    for m in messages(c):
        if m[35] != b"8" or m[37] == b"NONE" or m[11] not in sent.by_cl:
            continue
        f = sent.by_cl[m[11]]
        if 38 in f and m[150] not in (b"5", b"D") and m[38] != f[38]:
            found.append(f"{m[11]!r}: OrderQty {m[38]!r} not {f[38]!r}")
        for t in ECHOED:
            if m.get(t) != f.get(t):
                found.append(f"{m[11]!r} 150={m[150]!r}: tag {t} {m.get(t)!r} not {f.get(t)!r}")
    return found


def avg_faults(c: RawClient) -> list[str]:
    """Trades whose AvgPx is not the VWAP of LastPx x LastQty so far (cut to 6 places), or
    whose CumQty is not the sum of LastQty."""
    found = []
    qty: dict[bytes, Decimal] = {}
    notional: dict[bytes, Decimal] = {}
    for m in messages(c):
        if m[35] != b"8" or m[150] != b"F":
            continue
        last_qty = Decimal(m[32].decode())
        qty[m[37]] = qty.get(m[37], Decimal(0)) + last_qty
        notional[m[37]] = notional.get(m[37], Decimal(0)) + last_qty * Decimal(m[31].decode())
        vwap = (notional[m[37]] / qty[m[37]]).quantize(Decimal("0.000001"), ROUND_FLOOR)
        if Decimal(m[6].decode()) != vwap or Decimal(m[14].decode()) != qty[m[37]]:
            found.append(f"{m[11]!r}: AvgPx {m[6]!r} CumQty {m[14]!r}, VWAP {vwap} of {qty}")
    return found


def all_faults(*clients: RawClient) -> list[str]:
    return [f"{c.comp_id}: {f}" for c in clients for raw in frames(c.raw) for f in faults(raw)]


async def drain(*clients: Client, wait: float = 0.25) -> None:
    """Read what each client is sent until ``wait`` s pass without a message."""
    for c in clients:
        while (await c.recv(wait)) is not None:
            pass


def kinds(c: RawClient, *tags: int) -> list[tuple[bytes | None, ...]]:
    """``tags`` of each ExecutionReport, OrderCancelReject and OrderMassCancelReport."""
    return [tuple(m.get(t) for t in tags) for m in messages(c) if m[35] in (b"8", b"9", b"r")]


def test_sound_every_order_kind_and_request_reports_conform(harness: Harness) -> None:
    sent = Sent()

    async def scenario(h: Harness, port: int) -> None:
        a, b = await on(port), await on(port, "BOB")
        await a.send("D", *sent.note(order("lim", "2", "2.00", "100.00", "2", (59, "1"))))
        await drain(a, b)
        await b.send("D", *sent.note(order("ioc", "1", "0.50", "100.00", "2", (59, "3"))))
        await b.send("D", *sent.note(order("fok", "1", "0.30", "100.00", "2", (59, "4"))))
        await b.send("D", *sent.note(order("mkt", "1", "0.20", None, "1")))
        ice = order("ice", "2", "1.00", "101.00", "2", (111, "0.30"), (59, "0"))
        await a.send("D", *sent.note(ice))
        await a.send("D", *sent.note(order("po", "2", "0.10", "102.00", "2", (18, "6"))))
        await a.send("D", *sent.note(order("stp", "2", "0.10", None, "3", (99, "90.00"))))
        await a.send("D", *sent.note(order("stl", "2", "0.10", "89.00", "4", (99, "90.00"))))
        stpm = order("stpm", "2", "0.10", "103.00", "2", (25001, "2"))
        await a.send("D", *sent.note(stpm))
        await drain(a, b)
        await b.send("D", *sent.note(order("mk2", "1", "0.20", None, "1")))
        await drain(a, b)
        await a.send("H", *status_request("ice", "2"), (790, "st1"))
        await a.send("H", *status_request("nope", "2"))
        await a.send("AF", (584, "ms1"), (585, "7"))
        g = [(41, "lim"), (11, "lim2"), (55, "BTC-USD"), (54, "2"), (60, utc()), (38, "3.00")]
        await a.send("G", *sent.note([*g, (40, "2"), (44, "100.00"), (59, "1")]))
        await a.send("F", *cancel("ice", "ice-x", "2"))
        await a.send("F", *cancel("unk", "unk-x", "2"))
        g = [(41, "unk"), (11, "unk-g"), (55, "BTC-USD"), (54, "2"), (60, utc())]
        await a.send("G", *g, (38, "3.00"), (40, "2"), (44, "100.00"))
        await a.send("D", *order("bad1", "2", "1.00", "100.00", "2", (59, "6"), (126, utc(60))))
        await a.send("D", *order("bad2", "2", "1.00", "100.01", "2"))
        await a.send("D", *order("bad3", "2", "1.00", "100.00", "2", (18, "5")))
        await a.send("D", *order("bad4", "2", "1.00", None, "1", (18, "6")))
        await a.send("D", *order("lim", "2", "1.00", "100.00", "2"))
        await a.send("D", *order("bad5", "2", "1000000000.00", "100.00", "2"))
        await b.send("D", *sent.note(order("bad6", "1", "9000000.00", "100.00", "2")))
        await drain(a, b)
        await a.send("q", (11, "mc"), (530, "7"), (60, utc()))
        await drain(a, b)
        assert all_faults(a, b) == []
        assert echo_faults(a, sent) + echo_faults(b, sent) == []
        assert avg_faults(a) + avg_faults(b) == []
        got = kinds(a, 35, 11, 150, 39, 41, 102, 103, 434, 531)
        assert (b"9", b"unk-x", None, b"8", b"unk", b"1", None, b"1", None) in got
        assert (b"9", b"unk-g", None, b"8", b"unk", b"1", None, b"2", None) in got
        assert (b"8", b"lim2", b"5", b"1", b"lim", None, None, None, None) in got
        assert (b"8", b"ice-x", b"4", b"4", b"ice", None, None, None, None) in got
        assert (b"8", b"nope", b"I", b"8", None, None, None, None, None) in got
        assert (b"r", b"mc", None, None, None, None, None, None, b"7") in got
        refusals = {m[11]: m[103] for m in messages(a) + messages(b) if m.get(150) == b"8"}
        assert refusals == {
            b"bad1": b"11", b"bad2": b"99", b"bad3": b"11", b"bad4": b"11",
            b"lim": b"6", b"bad5": b"13", b"bad6": b"3", b"mkt": b"99",
        }  # fmt: skip
        assert not any(25001 in m for m in messages(a))

    run(harness, scenario)


def test_sound_avg_px_over_partial_fills_at_several_prices(harness: Harness) -> None:
    sent = Sent()

    async def scenario(h: Harness, port: int) -> None:
        a, b = await on(port), await on(port, "BOB")
        for cl, qty, px in (("s1", "0.30", "100.00"), ("s2", "0.30", "100.05")):
            await a.send("D", *sent.note(order(cl, "2", qty, px, "2")))
        await a.send("D", *sent.note(order("s3", "2", "0.10", "100.10", "2")))
        await drain(a, b)
        await b.send("D", *sent.note(order("big", "1", "1.00", "100.10", "2", (59, "1"))))
        await drain(a, b)
        await a.send("D", *sent.note(order("s4", "2", "0.20", "99.95", "2")))
        await drain(a, b)
        assert all_faults(a, b) == []
        assert echo_faults(a, sent) + echo_faults(b, sent) == []
        assert avg_faults(a) + avg_faults(b) == []
        big = [m for m in messages(b) if m.get(11) == b"big" and m[150] == b"F"]
        assert [(m[31], m[32], m[14], m[151], m[6], m[39]) for m in big] == [
            (b"100.00", b"0.30", b"0.30", b"0.70", b"100.000000", b"1"),
            (b"100.05", b"0.30", b"0.60", b"0.40", b"100.025000", b"1"),
            (b"100.10", b"0.10", b"0.70", b"0.30", b"100.035714", b"1"),
            (b"100.10", b"0.20", b"0.90", b"0.10", b"100.050000", b"1"),
        ]  # a resting maker's fill is at its own price: s4 trades at 100.10

    run(harness, scenario)


def test_sound_self_trade_post_only_session_end_and_triggers_conform(harness: Harness) -> None:
    sent = Sent()

    async def scenario(h: Harness, port: int) -> None:
        a, b = await on(port), await on(port, "BOB")
        await a.send("D", *sent.note(order("m1", "2", "1.00", "100.00", "2", (59, "1"))))
        await drain(a, b)
        for mode, cl in (("2", "t2"), ("3", "t3")):
            await a.send("D", *sent.note(order(cl, "1", "0.40", "100.00", "2", (25001, mode))))
            await drain(a, b)
        await a.send("D", *sent.note(order("m2", "2", "1.00", "100.00", "2", (59, "1"))))
        await drain(a, b)
        await a.send("D", *sent.note(order("t4", "1", "0.40", "100.00", "2", (25001, "4"))))
        await a.send("D", *sent.note(order("p1", "2", "0.10", "99.00", "2", (18, "6"))))
        await a.send("D", *sent.note(order("p2", "1", "0.10", "101.00", "2", (18, "6"))))
        await b.send("D", *sent.note(order("d1", "1", "0.30", "95.00", "2")))
        await a.send("D", *sent.note(order("st", "2", "0.50", None, "3", (99, "95.00"))))
        await drain(a, b)
        await a.send("D", *sent.note(order("x1", "2", "0.30", "95.00", "2", (59, "3"))))
        await drain(a, b)
        admin(h, AdminAction.END_OF_SESSION)
        await drain(a, b)
        assert all_faults(a, b) == []
        assert echo_faults(a, sent) + echo_faults(b, sent) == []
        got = kinds(a, 11, 150, 39, 103, 378)
        assert (b"t2", b"4", b"4", None, None) in got  # cancel newest: the taker
        assert (b"m1", b"4", b"4", None, None) in got  # cancel oldest: the maker
        assert (b"p2", b"8", b"8", b"99", None) in got  # post-only would take
        assert (b"st", b"D", b"0", None, b"99") in got  # triggered: Restated
        assert (b"st", b"4", b"4", None, None) in got  # nothing left to trade with
        assert (b"p1", b"C", b"C", None, None) in got  # a Day order at the session's end

    run(harness, scenario)


def test_sound_replaces_in_flight_chain_orig_cl_ord_id(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        a = await on(port)
        await a.send("D", *order("o1", "2", "1.00", "100.00", "2"))
        await drain(a)
        h.pause()  # the router stands still: both replaces and the cancel are in flight
        for cl, qty in (("o2", "1.50"), ("o3", "2.00")):
            await a.send(
                "G", (41, "o1"), (11, cl), (55, "BTC-USD"), (54, "2"), (60, utc()),
                (38, qty), (40, "2"), (44, "100.00"),
            )  # fmt: skip
        await a.send("H", *status_request("o1", "2"))
        await a.send("F", *cancel("o1", "o4", "2"))
        await drain(a)
        h.resume()
        await drain(a)
        assert all_faults(a) == []
        assert kinds(a, 11, 150, 39, 41, 38, 151) == [
            (b"o1", b"0", b"0", None, b"1.00", b"1.00"),
            (b"o1", b"I", b"E", None, b"1.00", b"1.00"),
            (b"o2", b"5", b"0", b"o1", b"1.50", b"1.50"),
            (b"o3", b"5", b"0", b"o2", b"2.00", b"2.00"),
            (b"o4", b"4", b"4", b"o3", b"2.00", b"0.00"),
        ]

    run(harness, scenario)
