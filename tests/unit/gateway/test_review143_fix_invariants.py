"""Review 143: FIX 4.4 order-entry invariants held over a seeded random order flow, over real
TCP, through the real router and matcher of ``harness.py`` (simplefix clients).

Method: ALICE (7) and BOB (8) send, from ``random.Random(seed)``, rounds of 1-8 messages:
NewOrderSingle (limit Day/GTC, IOC, FOK, market with and without a worst price, post-only,
iceberg, stop-limit, stop), OrderCancelRequest and OrderCancelReplaceRequest (price and
quantity up and down, on live, partly filled, finished, replaced-away and unknown ClOrdIDs),
OrderStatusRequest, mass cancel (530=7 and 530=1), mass status; a quarter of the rounds go
while the router and matcher stand still (``Harness.pause``), so requests cross fills and
each other. ``Checker`` reads every message each user receives: MsgSeqNum contiguous;
ExecIDs unique per session; tags 37 11 17 150 39 55 54 151 14 6 on every report; OrderQty =
CumQty + LeavesQty while live, LeavesQty 0 once done, CumQty never down, LastQty summing to
CumQty, AvgPx the VWAP of LastPx cut to the price's decimals plus four; no report after
done, no second 150=0; 150=0 under the D's ClOrdID, 150=5 under the G's with 41 the last
accepted ClOrdID, 150=4 under the F's; each D, F, G and q answered exactly once; an
OrderCancelReject answering the request's ClOrdID with 434 matching its kind and 39 the
order's state; both sides of each trade (grouped by the trade id in ExecID) with equal
LastQty and LastPx and opposite sides, bought = sold; then, all cancelled, the router's
balances: totals kept, nothing reserved, each account's BTC and USD moved by exactly its
reported fills and Commission (12). Then OrderQty and Price in ugly spellings.

Sound: all of the above on seeds 1, 2, 5, 11 (and 3, 4, 6-10, 12 tried);
the fees charged match Commission (12) to the minor unit; a cancel or replace naming an
older ClOrdID of a replaced order is refused as unknown (102=1, 39=8): FIX 4.4 asks for
the last accepted one; mass status reports a pending new order 37=NONE 39=A;
"+5", exponents, blanks, "5_0", "0x5", "1,5", "Infinity", "NaN" and non-ASCII digits
are 373=6 naming the tag and value; "05", "5.", ".5", "00.50", "5.000000" are taken at
their value; "-0" and "-.5" are refused as not positive.

Faults (each a strict xfail when written; fixed since, the same session):
1. A finished order with a cancel or replace still in flight is reported Pending Cancel (6)
   or Pending Replace (E): ``pending_status`` (procs/gateway/order_replies.py:142) counts the
   requests of every order, and ``_send_cancel_reject`` (:320) and ``status`` (:180) put it
   above OrdStatus whatever that is. So a status request of a filled order says 39=6 with
   LeavesQty 0, a too-late cancel reject says 39=6, and of two cancels the exchange refuses
   for a filled order the first says 39=6, the second 39=2 (the random flow, seeds 1-12:
   six times in five seeds, 39=6 and E, on filled and cancelled orders). FIX 4.4 Appendix D
   ranks the pending states above New and Partially Filled only. Fix: ignore a request in
   flight for an order whose OrdStatus is in ``FINISHED``.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.unit.gateway.harness import BTC, USD, Client, Harness, config, utc
from tests.unit.gateway.test_gateway import logged_on, order, run

USERS = ("ALICE", "BOB")
ACCOUNT = {"ALICE": 7, "BOB": 8}
FINISHED = frozenset((b"2", b"4", b"C", b"8"))
REQUIRED = (37, 11, 17, 150, 39, 55, 54, 151, 14, 6)
FUNDED = 10**12  # what ``Harness.fund`` gives each account of each asset, in minor units
MINOR = Decimal(10**6)  # both assets' decimals are 6


def dec(msg: Any, tag: int) -> Decimal:
    return Decimal(msg.get(tag).decode())


@dataclass
class Chain:
    """One order as its owner's reports describe it, across replaces."""

    side: bytes
    cl: bytes
    ord_type: str
    tif: str
    post_only: bool
    stop: str | None
    price: str | None
    qty: Decimal = Decimal(0)
    cum: Decimal = Decimal(0)
    last_sum: Decimal = Decimal(0)
    notional: Decimal = Decimal(0)
    status: bytes = b"A"
    names: list[bytes] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in FINISHED


class Checker:
    """Every message a user receives, checked against FIX 4.4's invariants; each broken one
    noted in ``faults`` as (kind, text)."""

    def __init__(self) -> None:
        self.faults: list[tuple[str, str]] = []
        self.sent: dict[tuple[str, bytes], tuple[str, bytes | None]] = {}
        self.new: dict[tuple[str, bytes], Chain] = {}  # D sent, by ClOrdID
        self.by_id: dict[tuple[str, bytes], Chain] = {}
        self.by_name: dict[tuple[str, bytes], Chain] = {}
        self.exec_ids: set[tuple[str, bytes]] = set()
        self.seq: dict[str, int] = {}
        self.trades: dict[bytes, list[tuple[bytes, bytes, bytes]]] = {}
        self.traded = {b"1": Decimal(0), b"2": Decimal(0)}
        self.btc = {u: Decimal(0) for u in USERS}
        self.usd = {u: Decimal(0) for u in USERS}
        #: (user, request ClOrdID) -> the answers it got (D: 0/8, F: 4/9, G: 5/9, H: I, q: r)
        self.answers: dict[tuple[str, bytes], list[bytes]] = {}

    def answered(self, user: str, m: Any, kind: bytes) -> None:
        cl = m.get(11)
        sent = self.sent.get((user, cl))
        if sent is not None:
            self.answers.setdefault((user, cl), []).append(kind)

    def unanswered(self) -> None:
        want = {"D": ({b"0"}, {b"8"}), "F": ({b"4", b"C"}, {b"9"}), "G": ({b"5"}, {b"9"})}
        want["Q"] = ({b"r"}, set())
        for (user, cl), (kind, _) in self.sent.items():
            got = self.answers.get((user, cl), [])
            ok, refused = want[kind]
            if sum(1 for g in got if g in ok | refused) != 1:
                self.fault("answers", f"{user} {kind} {cl!r} answered {got}")

    def fault(self, kind: str, text: str) -> None:
        self.faults.append((kind, text))

    def kinds(self) -> set[str]:
        return {k for k, _ in self.faults}

    def check(self, user: str, msg: Any) -> None:
        seq = int(msg.get(34))
        if user in self.seq and seq != self.seq[user] + 1:
            self.fault("seq", f"{user} MsgSeqNum {seq} after {self.seq[user]}")
        self.seq[user] = seq
        kind = msg.get(35)
        if kind == b"8":
            self.answered(user, msg, msg.get(150))
            self._report(user, msg)
        elif kind in (b"9", b"r"):
            self.answered(user, msg, kind)
        if kind == b"9":
            self._cancel_reject(user, msg)
        elif kind in (b"3", b"j"):
            self.fault("session-reject", f"{user}: {msg}")

    def _report(self, user: str, m: Any) -> None:
        missing = [t for t in REQUIRED if m.get(t) is None]
        if missing:
            self.fault("tags", f"{user} report without {missing}: {m}")
            return
        exec_id = m.get(17)
        if (user, exec_id) in self.exec_ids:
            self.fault("exec-id", f"{user} ExecID {exec_id!r} twice: {m}")
        self.exec_ids.add((user, exec_id))
        et, st, cl, oid = m.get(150), m.get(39), m.get(11), m.get(37)
        leaves, cum = dec(m, 151), dec(m, 14)
        if et == b"8":
            if self.sent.get((user, cl), ("?",))[0] != "D" or st != b"8" or leaves or cum:
                self.fault("reject", f"{user} rejection: {m}")
            if (user, cl) in self.new:
                self.new[(user, cl)].status = b"8"
            return
        if et == b"0" and (user, oid) not in self.by_id:
            chain = self.new.get((user, cl))
            if chain is None:
                self.fault("new", f"{user} 150=0 for no D of its ClOrdID: {m}")
                return
            self.by_id[(user, oid)] = chain
        chain = self.by_id.get((user, oid))
        if chain is None:
            if et != b"I" or st not in (b"8", b"A"):
                self.fault("unknown", f"{user} report of an order never acknowledged: {m}")
            return
        if et == b"I":
            self._status(user, m, chain)
            return
        if chain.done:
            self.fault("after-done", f"{user} 150={et!r} after 39={chain.status!r}: {m}")
        if cum < chain.cum:
            self.fault("cum-down", f"{user} CumQty {cum} after {chain.cum}: {m}")
        if et == b"F":
            last_qty, last_px = dec(m, 32), dec(m, 31)
            chain.last_sum += last_qty
            chain.notional += last_qty * last_px
            if chain.cum + last_qty != cum:
                self.fault("last-qty", f"{user} {chain.cum} + LastQty {last_qty} != {cum}: {m}")
            want = (chain.notional / cum).quantize(Decimal("0.000001"), ROUND_FLOOR)
            if dec(m, 6) != want:
                self.fault("avg-px", f"{user} AvgPx {m.get(6)!r}, VWAP {want}: {m}")
            trade = exec_id.split(b"-", 1)[1].split(b".")[0]
            self.trades.setdefault(trade, []).append((m.get(54), m.get(32), m.get(31)))
            self.traded[m.get(54)] += last_qty
            sign = 1 if m.get(54) == b"1" else -1
            self.btc[user] += sign * last_qty
            self.usd[user] -= sign * last_qty * last_px + dec(m, 12)
            if cl != chain.cl:
                self.fault("cl", f"{user} fill under {cl!r}, order is {chain.cl!r}: {m}")
        elif et == b"5":
            sent = self.sent.get((user, cl))
            if sent is None or sent[0] != "G" or m.get(41) != chain.cl:
                self.fault("cl", f"{user} replace {cl!r} 41={m.get(41)!r} of {chain.cl!r}: {m}")
            chain.cl = cl
            chain.names.append(cl)
            chain.price = m.get(44).decode() if m.get(44) else None
            self.by_name[(user, cl)] = chain
        elif et in (b"4", b"C"):
            sent = self.sent.get((user, cl))
            if sent is not None and sent[0] == "F":
                if m.get(41) != chain.cl:
                    self.fault("cl", f"{user} cancel 41={m.get(41)!r} of {chain.cl!r}: {m}")
                chain.cl = cl
            elif cl != chain.cl:
                self.fault("cl", f"{user} done under {cl!r}, order is {chain.cl!r}: {m}")
        elif et == b"0" and chain.status != b"A":
            self.fault("new-again", f"{user} 150=0 again (39={chain.status!r}): {m}")
        chain.cum, chain.status, chain.qty = cum, st, dec(m, 38)
        if chain.done:
            if leaves:
                self.fault("leaves", f"{user} done with LeavesQty {leaves}: {m}")
            if chain.last_sum != cum:
                self.fault("last-qty", f"{user} fills {chain.last_sum} != CumQty {cum}: {m}")
        elif chain.qty != cum + leaves:
            self.fault("qty", f"{user} OrderQty {chain.qty} != {cum} + {leaves}: {m}")

    def _status(self, user: str, m: Any, chain: Chain) -> None:
        st = m.get(39)
        if chain.done and st in (b"6", b"E"):  # fault 1
            self.fault("pending-of-finished", f"{user} status {st!r} of a done {chain}: {m}")
        elif dec(m, 14) != chain.cum or (chain.done and st != chain.status):
            self.fault("status", f"{user} status {st!r} cum {m.get(14)!r} of {chain}: {m}")
        if not chain.done and st in FINISHED:
            self.fault("status", f"{user} status {st!r} of a live {chain}: {m}")

    def _cancel_reject(self, user: str, m: Any) -> None:
        cl, orig, st = m.get(11), m.get(41), m.get(39)
        sent = self.sent.get((user, cl))
        if sent is None or m.get(434) != (b"1" if sent[0] == "F" else b"2") or st is None:
            self.fault("cxl-rej", f"{user} 9 answering {sent}: {m}")
            return
        chain = self.by_name.get((user, orig)) if orig else None
        if chain is None or orig not in (chain.cl, chain.names[-1]):
            return  # an older name of a replaced order: unknown (102=1, 39=8)
        if chain.done and st in (b"6", b"E"):  # fault 1
            self.fault("pending-of-finished", f"{user} 39={st!r} of a done {chain}: {m}")
        elif chain.done and st != chain.status:
            self.fault("cxl-rej-status", f"{user} 39={st!r} of a done {chain}: {m}")
        if not chain.done and st in FINISHED:
            self.fault("cxl-rej-status", f"{user} 39={st!r} of a live {chain}: {m}")


@dataclass
class Flow:
    """The seeded random order flow of both users."""

    rng: random.Random
    checker: Checker
    counter: int = 0
    names: dict[str, list[bytes]] = field(default_factory=lambda: {u: [] for u in USERS})

    def cl(self, user: str, kind: str, orig: bytes | None = None) -> bytes:
        self.counter += 1
        cl = b"%s%d" % (kind.encode(), self.counter)
        self.checker.sent[(user, cl)] = (kind, orig)
        return cl

    def price(self) -> str:
        return f"{self.rng.randint(1980, 2020) * 5 / 100:.2f}"

    def qty(self) -> str:
        return f"{self.rng.randint(1, 40) / 100:.2f}"

    def live(self, user: str) -> list[Chain]:
        return [c for (u, _), c in self.checker.by_name.items() if u == user and not c.done]

    def message(self, user: str) -> tuple[str, list[tuple[int, object]]]:
        rng = self.rng
        side = rng.choice("12")
        roll = rng.random()
        live = self.live(user)
        if roll < 0.2 and live:
            chain = rng.choice(live)
            return "F", self._cancel(user, chain.cl if rng.random() < 0.8 else self._any(user))
        if roll < 0.38 and live:
            return "G", self._replace(user, rng.choice(live))
        if roll < 0.44 and self.names[user]:
            return "H", [(11, self._any(user)), (55, "BTC-USD"), (54, side)]
        if roll < 0.46:
            scope = [(530, "7")] if rng.random() < 0.5 else [(530, "1"), (55, "BTC-USD")]
            return "q", [(11, self.cl(user, "Q")), *scope, (60, utc())]
        if roll < 0.48:
            return "AF", [(584, f"ms{self.counter}"), (585, "7")]
        kinds = ("limit", "limit", "limit", "ioc", "fok", "market", "post", "stop", "stopmkt")
        kind = rng.choice((*kinds, "iceberg", "mktpx"))
        cl = self.cl(user, "D")
        qty, px = self.qty(), self.price()
        stop: str | None = None
        extra: list[tuple[int, object]] = []
        ord_type, tif = "2", rng.choice("01")
        if kind == "ioc":
            tif = "3"
        elif kind == "fok":
            tif = "4"
        elif kind == "market":
            ord_type, tif = "1", "0"
        elif kind == "post":
            extra.append((18, "6"))
        elif kind == "mktpx":
            ord_type, tif = "1", "3"
        elif kind == "stop":
            ord_type, stop = "4", px
        elif kind == "stopmkt":
            ord_type, stop = "3", px
        elif kind == "iceberg":
            extra.append((111, f"{max(1, int(Decimal(qty) * 100) // 3) / 100:.2f}"))
        if tif != "0":
            extra.append((59, tif))
        if stop is not None:
            extra.append((99, stop))
        chain = Chain(side.encode(), cl, ord_type, tif, kind == "post", stop, px)
        chain.names.append(cl)
        self.checker.new[(user, cl)] = chain
        self.checker.by_name[(user, cl)] = chain
        self.names[user].append(cl)
        price = None if ord_type in "13" and kind != "mktpx" else px
        return "D", order(cl.decode(), side, qty, price, ord_type, *extra)

    def _any(self, user: str) -> bytes:
        return self.rng.choice([*self.names[user], b"nope"])

    def _cancel(self, user: str, orig: bytes) -> list[tuple[int, object]]:
        chain = self.checker.by_name.get((user, orig))
        side = chain.side.decode() if chain else "1"
        cl = self.cl(user, "F", orig)
        return [(41, orig), (11, cl), (55, "BTC-USD"), (54, side), (60, utc())]

    def _replace(self, user: str, chain: Chain) -> list[tuple[int, object]]:
        rng = self.rng
        orig = chain.cl
        cl = self.cl(user, "G", orig)
        self.names[user].append(cl)
        old = Decimal(chain.price or "100.00")
        price = str(old + Decimal(rng.randint(-3, 3)) * Decimal("0.05"))
        qty = str(max(Decimal("0.01"), chain.qty + Decimal(rng.randint(-20, 20)) / 100))
        extra: list[tuple[int, object]] = []
        if chain.tif != "0":
            extra.append((59, chain.tif))
        if chain.post_only:
            extra.append((18, "6"))
        if chain.stop is not None:
            extra.append((99, chain.stop))
        pairs = order(cl.decode(), chain.side.decode(), qty, price, chain.ord_type, *extra)
        return [(41, orig), *pairs]


async def drain(clients: dict[str, Client], checker: Checker, quiet: float) -> None:
    """Each user's messages until ``quiet`` s pass without one, heartbeats aside, checked."""
    for user, client in clients.items():
        while (msg := await client.recv(quiet)) is not None:
            if msg.get(35) != b"0":
                checker.check(user, msg)


async def random_flow(h: Harness, port: int, seed: int, rounds: int) -> Checker:
    """``rounds`` of ``Flow``'s messages, each user's orders then mass cancelled, and the
    router's balances held against the fills reported: the checker, its faults noted."""
    checker = Checker()
    flow = Flow(random.Random(seed), checker)
    clients = {u: await logged_on(port, u) for u in USERS}
    for c in clients.values():
        checker.seq[c.comp_id] = 1  # the Logon's
    for _ in range(rounds):
        paused = flow.rng.random() < 0.25
        if paused:
            h.pause()
        for _ in range(flow.rng.randint(1, 8)):
            user = flow.rng.choice(USERS)
            kind, pairs = flow.message(user)
            await clients[user].send(kind, *pairs)
        if paused:
            await asyncio.sleep(0.02)
            h.resume()
        await drain(clients, checker, 0.03)
    for user, c in clients.items():
        await c.send("q", (11, flow.cl(user, "Q")), (530, "7"), (60, utc()))
    await drain(clients, checker, 0.3)
    accounts = h.router.sequencer.accounts
    for asset in (USD, BTC):
        if accounts.totals(asset) != 2 * FUNDED:
            checker.fault("balance", f"asset {asset} totals {accounts.totals(asset)}")
    for user in USERS:
        account = ACCOUNT[user]
        for asset, delta in ((BTC, checker.btc[user]), (USD, checker.usd[user])):
            free, held = accounts.balance(account, asset)
            if held or free - FUNDED != delta * MINOR:
                checker.fault("balance", f"{user} asset {asset} {free} {held}, fills {delta}")
    for trade, sides in checker.trades.items():
        if (
            len(sides) != 2
            or {s[0] for s in sides} != {b"1", b"2"}
            or len({s[1:] for s in sides}) != 1
        ):
            checker.fault("trade", f"trade {trade!r}: {sides}")
    checker.unanswered()
    if checker.traded[b"1"] != checker.traded[b"2"]:
        checker.fault("trade", f"bought {checker.traded}")
    return checker


#: Seeds of the random flow: each about 5 s, 60 rounds of 1-8 messages (a quarter of the
#: rounds sent while the router and matcher stand still, so requests cross in flight).
SEEDS = (1, 5)  # (2 and 11 too when written; fewer for the suite's time)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_flow_keeps_fix_invariants(harness: Harness, seed: int) -> None:
    """Sound: every invariant of the module docstring holds on every message of the seeded
    flow, and the router's balances match the fills reported (fault 1 included since its
    fix: which seeds met it depended on timing, which requests crossed a fill)."""
    found: list[Checker] = []

    async def scenario(h: Harness, port: int) -> None:
        found.append(await random_flow(h, port, seed, 60))

    run(harness, scenario)
    faults = found[0].faults
    assert not faults, "\n".join(f"{k}: {t}" for k, t in faults[:5])
    assert len(found[0].trades) >= 20, "the flow traded too little to check much"


#: Spellings of a decimal a FIX Qty or Price may not take (FIX 4.4's float: optional "-",
#: digits, at most one "."), then ones it may, with their value.
REFUSED = [b"+5", b"1e1", b"1E1", b"5e-1", b" 5", b"5 ", b"\t5", b"5_0", b"0x5", b"1,5",
           b"5.5.5", b".", b"Infinity", b"NaN",
           b"\xd9\xa5", b"\xef\xbc\x95", b"\xc2\xb2"]  # fmt: skip
TAKEN = [b"05", b"0005.00", b"5.", b".5", b"00.50", b"5.000000"]


def test_ugly_spellings_are_taken_at_their_value_or_refused_naming_the_tag(
    harness: Harness,
) -> None:
    """Sound: each spelling of OrderQty (38) and Price (44) in ``REFUSED`` gets a Reject
    (35=3, 373=6) naming the tag (371) and the value (58); each in ``TAKEN`` is acknowledged
    at exactly its value; "-0" and "-.5" are refused as not positive (150=8). Never an order
    of another quantity or price."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        for k, text in enumerate([*REFUSED, *TAKEN, b"-0", b"-.5"]):
            for tag in (38, 44):
                pairs: list[tuple[int, object]] = [(11, f"u{tag}-{k}"), (55, "BTC-USD")]
                pairs += [(54, "1"), (60, utc()), (40, "2")]
                pairs += [(38, text if tag == 38 else b"1.00")]
                pairs += [(44, text if tag == 44 else b"90.00")]
                await alice.send("D", *pairs)
                m = await alice.expect("3" if text in REFUSED else "8")
                if text in REFUSED:
                    assert m.get(371) == b"%d" % tag and m.get(373) == b"6", m.encode()
                    if text.isascii() and text.decode().isprintable():  # else shown escaped
                        assert b"'%s'" % text in m.get(58), m.encode()
                elif text in TAKEN:
                    assert m.get(150) == b"0" and dec(m, tag) == Decimal(text.decode()), m
                    cancel = [(41, f"u{tag}-{k}"), (11, f"c{tag}-{k}"), (55, "BTC-USD")]
                    await alice.send("F", *cancel, (54, "1"), (60, utc()))
                    assert (await alice.expect("8")).get(150) == b"4"
                else:
                    assert m.get(150) == b"8" and b"must be positive" in m.get(58), m

    run(harness, scenario)


def one_at_a_time(instance: str, var: Path) -> Harness:
    """ALICE (7) and BOB (8) on an exchange whose matcher takes one command a step, so a
    test can let a fill through while a cancel waits behind it in the matcher's ring."""
    cfg = config(instance, var)
    matchers = [msgspec.structs.replace(m, batch=1) for m in cfg.matchers]
    h = Harness(msgspec.structs.replace(cfg, matchers=matchers))
    for k, comp in enumerate(USERS):
        h.add_user(comp, "secret", 7 + k)
        h.fund(7 + k)
    return h


def cancel_of_x(cl: str) -> list[tuple[int, object]]:
    return [(41, "X"), (11, cl), (55, "BTC-USD"), (54, "1"), (60, utc())]


async def cancels_behind_a_fill(h: Harness, port: int, *cancels: str) -> Client:
    """ALICE's bid X (0.10) rests; with the pipeline paused, BOB's sell that fills it, then
    her ``cancels`` of X, reach the gateway in that order: ALICE's client."""
    alice = await logged_on(port)
    bob = await logged_on(port, "BOB")
    await alice.send("D", *order("X", "1", "0.10", "100.00"))
    assert (await alice.expect("8")).get(150) == b"0"
    h.pause()
    await bob.send("D", *order("S", "2", "0.10", "100.00"))
    for cl in cancels:
        await alice.send("F", *cancel_of_x(cl))
    await asyncio.sleep(0.05)
    return alice


def test_fault1_a_filled_order_is_not_called_pending_cancel_by_the_gateway(
    instance: str, tmp_path: Path
) -> None:
    """Fault 1, the gateway's own answers. ALICE's bid X (0.10) rests; her cancel C1 of X is
    sequenced behind BOB's sell that fills X, and the matcher has taken only the sell: X is
    filled (150=F 39=2 151=0 14=0.10), C1 still waits. Her OrderStatusRequest of X then
    says 39=6, Pending Cancel, of an order whose LeavesQty is 0 and CumQty its OrderQty, and
    her cancel C3 of X, refused by the gateway as too late (102=0, "the order ... is
    finished"), says 39=6 too. FIX 4.4 Appendix D: Pending Cancel outranks New and
    Partially Filled, not Filled; a filled order cannot be cancelled, pending or not.
    Expected 39=2 on both."""
    h = one_at_a_time(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        alice = await cancels_behind_a_fill(h, port, "C1")
        while h.router.step(timeout_s=0):
            pass
        assert h.matcher.step(timeout_s=0) == 1  # the sell, not C1
        h.router.settle()
        fill = await alice.expect("8")
        assert (fill.get(150), fill.get(39), fill.get(151)) == (b"F", b"2", b"0.00"), fill
        await alice.send("H", (11, "X"), (55, "BTC-USD"), (54, "1"))
        status = await alice.expect("8")
        await alice.send("F", *cancel_of_x("C3"))
        too_late = await alice.expect("9")
        h.resume()
        late = await alice.expect("9")
        assert (late.get(11), late.get(39)) == (b"C1", b"2"), late
        assert (too_late.get(11), too_late.get(102)) == (b"C3", b"0"), too_late
        assert (status.get(150), status.get(14), status.get(151)) == (b"I", b"0.10", b"0.00")
        assert (status.get(39), too_late.get(39)) == (b"2", b"2"), (status, too_late)

    try:
        run(h, scenario)
    finally:
        h.close()


def test_fault1_the_first_of_two_cancels_too_late_is_not_pending_cancel(
    harness: Harness,
) -> None:
    """Fault 1, the exchange's refusal. ALICE's bid X rests; BOB's crossing sell, then her
    cancels C1 and C2 of X, reach the router in that order. X fills (39=2); the matcher
    refuses both cancels (UNKNOWN_ORDER): C1's OrderCancelReject says 39=6 (C2 still in
    flight), C2's 39=2. Both answer for one filled order: expected 39=2 on each. The
    random flow meets this with cancels and replaces alike (39=6 or E)."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await cancels_behind_a_fill(h, port, "C1", "C2")
        h.resume()
        fill = await alice.expect("8")
        first, second = await alice.expect("9"), await alice.expect("9")
        assert (fill.get(150), fill.get(39)) == (b"F", b"2"), fill
        assert [(m.get(11), m.get(102)) for m in (first, second)] == [(b"C1", b"0"), (b"C2", b"0")]
        assert (first.get(39), second.get(39)) == (b"2", b"2"), (first, second)

    run(harness, scenario)
