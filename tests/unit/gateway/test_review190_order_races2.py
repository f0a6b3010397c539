"""Review 190, part 2: seeded random races of FIX order entry against the report invariants
(test_review190_order_races.py has the review's account, the rig and the scenarios)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal

import pytest

from procs.common.records import Record
from procs.common.types import TimeInForce
from tests.unit.gateway.test_review190_order_races import (
    FINISHED,
    GATEWAY,
    STAMP,
    SYM,
    Msg,
    Pairs,
    Rig,
    named,
    order,
    replace,
    status,
)

# -- the random flow ---------------------------------------------------------------------------


@dataclass
class _Known:
    """One order as its reports describe it (by OrderID)."""

    cum: Decimal = Decimal(0)
    last_sum: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    ended: bytes | None = None  # the terminal OrdStatus once reported


@dataclass
class _Checker:
    faults: list[str] = field(default_factory=list)
    exec_ids: set[bytes] = field(default_factory=set)
    orders: dict[bytes, _Known] = field(default_factory=dict)
    sent: dict[bytes, str] = field(default_factory=dict)  # ClOrdID -> D, F, G, q
    answers: dict[bytes, int] = field(default_factory=dict)

    def check(self, m: Msg) -> None:
        kind = m[35]
        cl = m.get(11, b"")
        if kind in (b"r", b"9"):
            self.answers[cl] = self.answers.get(cl, 0) + 1
        if kind == b"9" and m[37] != b"NONE":
            known = self.orders.get(m[37])
            if known is not None and known.ended is not None and m[39] != known.ended:
                self.faults.append(f"cancel reject 39={m[39]!r} after {known.ended!r}: {m}")
        if kind != b"8":
            return
        exec_type, ord_status = m[150], m[39]
        if m[17] in self.exec_ids:
            self.faults.append(f"ExecID repeated: {m}")
        self.exec_ids.add(m[17])
        answer = {b"0": "D", b"8": "D", b"4": "F", b"5": "G"}.get(exec_type)
        if answer is not None and self.sent.get(cl) == answer:
            self.answers[cl] = self.answers.get(cl, 0) + 1
        if m[37] == b"NONE":
            return
        qty, cum, leaves = (Decimal(m[t].decode()) for t in (38, 14, 151))
        done = ord_status in FINISHED
        if leaves != 0 if done else qty != cum + leaves:
            self.faults.append(f"quantities: {m}")
        known = self.orders.setdefault(m[37], _Known())
        if exec_type == b"I":
            if known.ended is not None and ord_status != known.ended:
                self.faults.append(f"status {ord_status!r} after {known.ended!r}: {m}")
            return
        if known.ended is not None:
            self.faults.append(f"report after {known.ended!r}: {m}")
        if cum < known.cum:
            self.faults.append(f"CumQty down: {m}")
        if exec_type == b"F":
            last_qty = Decimal(m[32].decode())
            known.last_sum += last_qty
            known.notional += last_qty * Decimal(m[31].decode())
        known.cum = cum
        if known.last_sum != cum:
            self.faults.append(f"LastQty sum {known.last_sum} != CumQty: {m}")
        if cum:
            vwap = (known.notional / cum).quantize(Decimal("0.000001"), rounding=ROUND_FLOOR)
            if Decimal(m[6].decode()) != vwap:
                self.faults.append(f"AvgPx != {vwap}: {m}")
        if ord_status in FINISHED:
            known.ended = ord_status


def _random_flow(seed: int, steps: int = 1500) -> tuple[Rig, _Checker]:
    rng = random.Random(seed)
    rig, checker = Rig(), _Checker()
    held: list[Record] = []
    names: dict[str, tuple[int, int, int]] = {}  # each ClOrdID sent: side, OrdType, TIF
    seen = 0
    for n in range(steps):
        action = rng.choices("DFGHqXRE", weights=(4, 2, 3, 1, 0.2, 3, 3, 4))[0]
        cl = f"{action}{n}"
        price = str(rng.randint(98, 102))
        side = rng.randint(1, 2)
        if action == "D":
            stop = rng.random() < 0.15
            extra: Pairs = ((99, "101" if side == 1 else "99"),) if stop else ()
            tif = rng.choice((1, 1, 1, 0, 3))
            rig.send("D", *order(cl, side, str(rng.randint(1, 8)), *extra, price=price,
                                 kind=4 if stop else 2, tif=tif))  # fmt: skip
            checker.sent[cl.encode()] = "D"
            names[cl] = (side, 4 if stop else 2, tif)
        elif action in "FGH" and names:
            live = [c.decode() for _, c in rig.entry.live]  # mostly what the client holds
            orig = rng.choice(live if live and rng.random() < 0.7 else list(names))
            o_side, kind, o_tif = names[orig]
            if action == "H":
                rig.send("H", *status(orig))
            elif action == "F":
                rig.send("F", *named(cl, orig, o_side))
                checker.sent[cl.encode()] = "F"
            else:
                stop_px: Pairs = ((99, "101" if o_side == 1 else "99"),) if kind == 4 else ()
                qty = str(rng.randint(1, 9))
                pairs = replace(cl, orig, qty, price, o_side, *stop_px, kind=kind, tif=o_tif)
                rig.send("G", *pairs)
                checker.sent[cl.encode()] = "G"
            if action != "H":
                names[cl] = (o_side, kind, o_tif)
        elif action == "q":
            rig.send("q", (11, cl), (530, 7), (60, STAMP))
            checker.sent[cl.encode()] = "q"
        elif action == "X":
            tif = rng.choice((TimeInForce.IOC, TimeInForce.GTC))
            held += rig.other(side, rng.randint(1, 6) * 100, int(price) * 100, tif)
        elif action == "R":
            held += rig.route(rng.randint(0, len(rig.entry.outgoing)))
        elif action == "E":
            count = rng.randint(0, len(held))
            rig.deliver(held[:count])
            del held[:count]
        for m in rig.session.sent[seen:]:
            checker.check(m)
        seen = len(rig.session.sent)
    while held or rig.entry.outgoing:
        rig.deliver(held)
        held = rig.route()
    for m in rig.session.sent[seen:]:
        checker.check(m)
    return rig, checker


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_holds_random_races_keep_the_report_invariants(seed: int) -> None:
    """The module docstring's invariants over a seeded flow of orders, crossing orders,
    cancels, replaces (of live, pending, replaced-away and finished ids), status requests
    and mass cancels, commands and events released in random slices; then, all drained,
    every request answered once, none waiting, and the gateway's live orders the book's."""
    rig, checker = _random_flow(seed)
    assert checker.faults == []
    unanswered = {cl: kind for cl, kind in checker.sent.items() if checker.answers.get(cl) != 1}
    assert unanswered == {}
    assert not rig.entry.requests and not rig.entry.mass_cancels and not rig.entry.outgoing
    book = rig.matcher.books[SYM.id]
    ours = {
        oid: o.leaves + o.reserve
        for oid, o in [*book.orders.items(), *book.stops.items()]
        if o.gateway == GATEWAY
    }
    assert {o.order_id: o.leaves for o in rig.entry.live.values()} == ours
    assert len(ours) > 0 and len(checker.exec_ids) > 500  # the flow did something
