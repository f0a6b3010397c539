"""Review 220 (hostile): an exchange with two matchers (m1: BTC-USD, m2: ETH-USD) and the
commands that span them: mass cancels over FIX (q, 530=7 and 530=1) and REST (``DELETE
openOrders``), one matcher held while the other answers, one killed and restarted with a
mass cancel in flight, one account's dollars wanted by orders on both matchers at once, a
halt of one symbol, an end of session across both, a mass status (AF) and the private
stream over both.

Rig: ``rest_rig``'s exchange (FIX and REST over real sockets in front of real rings, an
in-process router stepped in the test's loop) with review 41's second matcher
(``TwoMatchers``), here with its own asset (ETH) and a switch that holds m2 alone (a
SIGSTOPped matcher: its input waits in its ring, m1 goes on).

One fault found, fixed (its test begins "Was (fixed)"): with one matcher held, ``GET
account`` of every account waited and gave a 504, an account with nothing at it too (the
router's balance label was below any command outstanding at any matcher); the router labels
each account's balances by the matchers its orders are on now (``applied.py``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import AssetConfig, MatcherConfig, RingexConfig, SymbolConfig
from procs.common.records import AdminCommand, Transfer
from procs.common.types import AdminAction
from procs.gateway.rest import RestApi
from procs.matcher.main import MatcherShell
from tests.unit.gateway.harness import FUNDER, USD, Client, Harness, settled, utc
from tests.unit.gateway.rest_rig import ALICE, BOB, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_review41_fanout import TwoMatchers
from tests.unit.gateway.test_review192_exec_reports import fields, quiet

ETH = 3
BTCUSD, ETHUSD = 1, 2
OPEN, ORDER, ACCOUNT = "/api/v1/openOrders", "/api/v1/order", "/api/v1/account"


class Held(TwoMatchers):
    """Review 41's two matchers, and ``m2_held``: m2 not stepped (SIGSTOP), m1 and the
    router going on; ``restart_m2`` kills m2 (no snapshot) and starts it again on its
    rings, as the supervisor would after a SIGKILL."""

    m2_held = False

    def step_pipeline(self) -> int:
        done = 0
        while n := (
            self.router.step(timeout_s=0)
            + self.matcher.step(0)
            + (0 if self.m2_held else self.m2.step(0))
        ):
            done += n
        self.router.settle()
        return done

    def restart_m2(self) -> None:
        self.m2.close()
        self.m2 = MatcherShell(self.cfg, "m2")


def two_symbols(cfg: RingexConfig) -> RingexConfig:
    eth = SymbolConfig(name="ETH-USD", id=ETHUSD, price_decimals=2, qty_decimals=2, tick=5,
                       base="ETH")  # fmt: skip
    m2 = MatcherConfig(name="m2", symbols=["ETH-USD"], snapshot_every=0)
    return msgspec.structs.replace(
        cfg,
        assets=[*cfg.assets, AssetConfig(name="ETH", id=ETH, decimals=6)],
        symbols=[*cfg.symbols, eth],
        matchers=[*cfg.matchers, m2],
    )


@pytest.fixture
def harness(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Held]:
    """ALICE (601, 1,000,000 USD), BOB (602, 10 BTC, 10 ETH), each with FIX and REST."""
    monkeypatch.setattr("tests.unit.gateway.rest_rig.Harness", Held)
    for h in rest_exchange(instance, tmp_path, reshape=two_symbols):
        assert isinstance(h, Held)
        h.funder.publish_batch([Transfer(0, 0, FUNDER, 1, 99_001, BOB, ETH, 10 * 10**6, 99_001)])
        h.step_pipeline()
        h.funder_replies.read(64)
        yield h


def fix_order(
    cl: str, symbol: str, side: str, qty: str, price: str, tif: str = "1"
) -> list[tuple[int, object]]:
    return [(11, cl), (55, symbol), (54, side), (60, utc()), (38, qty), (40, "2"), (44, price),
            (59, tif)]  # fmt: skip


#: The ClOrdIDs and symbols of ``rest_orders``'s bids.
PLACED = {"b1": "BTC-USD", "b2": "BTC-USD", "e1": "ETH-USD", "e2": "ETH-USD"}


async def rest_orders(h: Harness, fix: Client, tif: str = "1") -> dict[str, int]:
    """ALICE's four bids over FIX, two a matcher, acknowledged: ClOrdID -> its hold."""
    holds = {}
    for k, (cl, sym) in enumerate(PLACED.items()):
        before = usd(h)[1]
        await fix.send("D", *fix_order(cl, sym, "1", "0.10", f"{90 + k}.00", tif))
        ack = await fix.expect("8")
        assert fields(ack, 11, 150) == (cl.encode(), b"0"), ack
        holds[cl] = usd(h)[1] - before
    return holds


def usd(h: Harness, account: int = ALICE) -> tuple[int, int]:
    """The router's (free, locked) dollars of ``account``."""
    return h.router.sequencer.accounts.balance(account, USD)


def kinds(messages: list[Any]) -> Counter[tuple[bytes, bytes | None, bytes | None]]:
    """(MsgType, ClOrdID, ExecType) of each message, counted."""
    return Counter((m.get(35), m.get(11), m.get(150)) for m in messages)


def admin(h: Harness, action: AdminAction, symbol: int) -> None:
    h.funder.publish_batch([AdminCommand(0, 0, action, symbol, time.time_ns())])


async def settled_fix(fix: Client, done: Any, timeout_s: float = 5.0) -> list[Any]:
    """``fix``'s messages until ``done(messages)``, within ``timeout_s``."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while not done(got) and time.monotonic() < deadline:
        m = await fix.recv(0.05)
        if m is not None and m.get(35) != b"0":
            got.append(m)
    return got


def ended(n: int) -> Any:
    return lambda got: sum(m.get(35) == b"8" and m.get(150) in (b"4", b"C") for m in got) >= n


# == mass cancels over FIX ====================================================================


@pytest.mark.parametrize("kind", ["7", "1"])
def test_a_fix_mass_cancel_reports_once_and_cancels_each_order_once(
    harness: Held, kind: str
) -> None:
    """530=7 cancels ALICE's orders on both matchers; 530=1 55=ETH-USD those on m2 only.
    One OrderMassCancelReport (531 = 530), each cancel reported once, nothing after; the
    holds of the cancelled orders released, those of the others kept."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        holds = await rest_orders(h, fix)
        extra = [(55, "ETH-USD")] if kind == "1" else []
        await fix.send("q", (11, "mc"), (530, kind), *extra, (60, utc()))
        gone = [cl for cl, sym in PLACED.items() if kind == "7" or sym == "ETH-USD"]
        got = await settled_fix(fix, ended(len(gone)))
        got += await quiet(fix, 0.3)
        reports = [m for m in got if m.get(35) == b"r"]
        assert [fields(m, 11, 530, 531) for m in reports] == [(b"mc", kind.encode(), kind.encode())]
        assert all(m.get(533) in (None, b"%d" % len(gone)) for m in reports), reports
        cancels = sorted(m.get(11).decode() for m in got if m.get(35) == b"8")
        assert cancels == sorted(gone), got
        assert all(m.get(150) == b"4" for m in got if m.get(35) == b"8"), got
        left = [cl for cl in PLACED if cl not in gone]
        assert h.router.sequencer.accounts.open_orders(ALICE) == len(left)
        await settled(lambda: usd(h)[1] == sum(holds[cl] for cl in left))
        assert usd(h)[1] == sum(holds[cl] for cl in left)

    run(h, scenario)


def test_a_mass_cancel_with_one_matcher_held_finishes_when_it_resumes(harness: Held) -> None:
    """m2 held (SIGSTOP): the report comes (the router has it durable), m1's cancels come,
    an AF lists m2's orders still open, m1's not; m2 resumed, its two cancels come once and
    every hold is released; no second report."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        await rest_orders(h, fix)
        h.m2_held = True
        await fix.send("q", (11, "mc"), (530, "7"), (60, utc()))
        got = await settled_fix(fix, ended(2))
        got += await quiet(fix, 0.3)
        assert kinds(got) == Counter(
            {(b"r", b"mc", None): 1, (b"8", b"b1", b"4"): 1, (b"8", b"b2", b"4"): 1}
        ), got
        await fix.send("AF", (584, "st"), (585, "7"))
        status = await settled_fix(fix, lambda g: any(m.get(912) == b"Y" for m in g))
        assert sorted(fields(m, 11, 39) for m in status) == [(b"e1", b"0"), (b"e2", b"0")]
        assert usd(h)[1] > 0
        h.m2_held = False
        got = await settled_fix(fix, ended(2))
        got += await quiet(fix, 0.3)
        assert kinds(got) == Counter({(b"8", b"e1", b"4"): 1, (b"8", b"e2", b"4"): 1}), got
        await settled(lambda: usd(h)[1] == 0)
        assert usd(h) == (1_000_000 * 10**6, 0)

    run(h, scenario)


def test_a_matcher_killed_with_a_mass_cancel_in_its_ring_reports_each_cancel_once(
    harness: Held,
) -> None:
    """The mass cancel reaches m2's input ring while m2 is held; m2 is killed and
    restarted (SIGKILL, the supervisor's restart on the same rings): it executes the
    mass cancel once, each of its orders is reported cancelled once, the holds go."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        await rest_orders(h, fix)
        h.m2_held = True
        await fix.send("q", (11, "mc"), (530, "7"), (60, utc()))
        got = await settled_fix(fix, ended(2))
        h.restart_m2()
        h.m2_held = False
        got += await settled_fix(fix, ended(4))
        got += await quiet(fix, 0.3)
        cancels = Counter(m.get(11) for m in got if m.get(35) == b"8" and m.get(150) == b"4")
        assert cancels == dict.fromkeys([b"b1", b"b2", b"e1", b"e2"], 1), got
        assert [m.get(11) for m in got if m.get(35) == b"r"] == [b"mc"]
        await settled(lambda: usd(h)[1] == 0)
        assert usd(h) == (1_000_000 * 10**6, 0)
        assert h.router.sequencer.accounts.open_orders(ALICE) == 0

    run(h, scenario)


def test_a_matcher_killed_after_executing_before_committing_reports_once(
    harness: Held, monkeypatch: pytest.MonkeyPatch
) -> None:
    """m2 executes the mass cancel and publishes its events, then dies before it commits
    its input (the commit never comes): the restarted m2 finds its events in its output
    ring and makes none again. Each cancel reported once, holds released once."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        await rest_orders(h, fix)
        h.m2_held = True
        await fix.send("q", (11, "mc"), (530, "7"), (60, utc()))
        got = await settled_fix(fix, ended(2))
        monkeypatch.setattr(h.m2.consumer, "commit", lambda: None)
        h.m2.step(0)  # the events out, the input not committed
        h.restart_m2()
        h.m2_held = False
        got += await settled_fix(fix, ended(4))
        got += await quiet(fix, 0.3)
        cancels = Counter(m.get(11) for m in got if m.get(35) == b"8" and m.get(150) == b"4")
        assert cancels == dict.fromkeys([b"b1", b"b2", b"e1", b"e2"], 1), got
        await settled(lambda: usd(h)[1] == 0)
        assert usd(h) == (1_000_000 * 10**6, 0)

    run(h, scenario)


# == mass cancels over REST ===================================================================


def test_rest_cancel_all_lists_both_matchers_orders_as_cancelled(harness: Held) -> None:
    """``DELETE openOrders`` without a symbol: the orders of both matchers, placed over REST
    and FIX, each listed once as CANCELED; with a symbol, that symbol's only; the account's
    dollars all free after."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        fix = await fix_user(h, "ALICE", "alice-pw")
        try:
            await rest_orders(h, fix)
            ids = []
            for sym in ("BTC-USD", "ETH-USD"):
                placed = await alice.call("POST", ORDER, symbol=sym, side="BUY", type="LIMIT",
                                          price="80.00", quantity="0.10")  # fmt: skip
                ids.append(placed["orderId"])
            gone = await alice.call("DELETE", OPEN, symbol="ETH-USD")
            assert len(gone) == 3 and {o["symbol"] for o in gone} == {"ETH-USD"}, gone
            assert {o["status"] for o in gone} == {"CANCELED"}
            rest = await alice.call("DELETE", OPEN)
            assert len(rest) == 3 and {o["symbol"] for o in rest} == {"BTC-USD"}, rest
            assert {o["status"] for o in rest} == {"CANCELED"}
            assert len({o["orderId"] for o in gone + rest}) == 6
            assert await alice.call("GET", OPEN) == []
            bal = await alice.call("GET", ACCOUNT)  # read your writes: no wait first
            (dollars,) = [b for b in bal["balances"] if b["asset"] == "USD"]
            assert (dollars["free"], dollars["locked"]) == ("1000000.000000", "0.000000")
            cancels = Counter(m.get(11) for m in await quiet(fix, 0.3) if m.get(150) == b"4")
            assert cancels == dict.fromkeys([b"b1", b"b2", b"e1", b"e2"], 1)
        finally:
            await alice.close()

    run(h, scenario)


def test_rest_cancel_all_with_one_matcher_held(harness: Held) -> None:
    """m2 held: the answer (after its wait for the ends) lists m1's orders CANCELED and
    m2's as they were listed (NEW), as documented; resumed, ``openOrders`` empties and the
    stream reports each of m2's cancels once."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            for sym in ("BTC-USD", "ETH-USD"):
                await alice.call("POST", ORDER, symbol=sym, side="BUY", type="LIMIT",
                                 price="80.00", quantity="0.10")  # fmt: skip
            ws = await alice.stream()
            assert (await ws.receive_json(timeout=3.0))["event"] == "snapshot"
            h.m2_held = True
            answer = await alice.call("DELETE", OPEN)
            assert {o["symbol"]: o["status"] for o in answer} == {
                "BTC-USD": "CANCELED",
                "ETH-USD": "NEW",
            }, answer
            h.m2_held = False
            await settled(lambda: api.core.open_orders(ALICE, None) == [])
            assert await alice.call("GET", OPEN) == []
            events: list[dict[str, Any]] = []
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline and not any(
                e.get("symbol") == "ETH-USD" and e.get("status") == "CANCELED" for e in events
            ):
                m = await ws.receive_json(timeout=3.0)
                if m["event"] == "executionReport":
                    events.append(m["data"])
            done = Counter((e["symbol"], e["status"]) for e in events)
            assert done == {("BTC-USD", "CANCELED"): 1, ("ETH-USD", "CANCELED"): 1}, events
        finally:
            await alice.close()

    run(h, scenario)


# == risk, halts, session end across matchers =================================================


def test_one_balance_wanted_on_both_matchers_at_once_is_never_overdrawn(harness: Held) -> None:
    """CAROL has 100 dollars; two bids of 90 each go out together, one to each matcher
    (the pipeline held, so both are in flight at once): one is taken, one refused for
    its balance (103=3), and her dollars are never below zero."""
    h = harness
    h.add_user("CAROL", "carol-pw", 603)
    h.fund(603, usd=100 * 10**6, btc=0)

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "CAROL", "carol-pw")
        h.pause()
        await fix.send("D", *fix_order("c1", "BTC-USD", "1", "1.00", "90.00"))
        await fix.send("D", *fix_order("c2", "ETH-USD", "1", "1.00", "90.00"))
        gw = h.gateway
        assert gw is not None
        await settled(lambda: gw.producer.sequence >= 2)
        h.resume()
        got = await settled_fix(fix, lambda g: len(g) >= 2)
        answers = sorted(fields(m, 11, 150) for m in got)
        assert answers == [(b"c1", b"0"), (b"c2", b"8")], got
        free, locked = usd(h, 603)
        assert free >= 0 and locked >= 90 * 10**6 and free + locked == 100 * 10**6

    run(h, scenario)


def test_a_halt_of_one_symbol_leaves_the_other_trading_and_a_mass_cancel_whole(
    harness: Held,
) -> None:
    """ETH-USD halted: a new ETH-USD order is refused (103=2), a BTC-USD one taken; a
    530=7 mass cancel still ends the orders on the halted book too."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        await rest_orders(h, fix)
        admin(h, AdminAction.HALT, ETHUSD)
        await settled(lambda: h.m2.matcher.books[ETHUSD].halted)
        await fix.send("D", *fix_order("e3", "ETH-USD", "1", "0.10", "95.00"))
        await fix.send("D", *fix_order("b3", "BTC-USD", "1", "0.10", "95.00"))
        got = await settled_fix(fix, lambda g: sum(m.get(35) == b"8" for m in g) >= 2)
        assert sorted(fields(m, 11, 150, 103) for m in got if m.get(35) == b"8") == [
            (b"b3", b"0", None),
            (b"e3", b"8", b"2"),
        ], got
        await fix.send("q", (11, "mc"), (530, "7"), (60, utc()))
        got = await settled_fix(fix, ended(5))
        got += await quiet(fix, 0.3)
        cancels = Counter(m.get(11) for m in got if m.get(35) == b"8")
        assert cancels == dict.fromkeys([b"b1", b"b2", b"b3", b"e1", b"e2"], 1), got
        await settled(lambda: usd(h)[1] == 0)
        assert usd(h)[1] == 0

    run(h, scenario)


def test_an_end_of_session_expires_day_orders_on_both_matchers_once(harness: Held) -> None:
    """ALICE's DAY orders on both matchers expire (150=C) once each at an end of session
    for every symbol; her GTC orders stay; the DAY orders' holds are released."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        await rest_orders(h, fix, tif="0")  # DAY
        await fix.send("D", *fix_order("g1", "BTC-USD", "1", "0.10", "70.00"))
        await fix.send("D", *fix_order("g2", "ETH-USD", "1", "0.10", "70.00"))
        await settled_fix(fix, lambda g: len(g) >= 2)
        admin(h, AdminAction.END_OF_SESSION, 0)
        got = await settled_fix(fix, ended(4))
        got += await quiet(fix, 0.3)
        assert kinds(got) == Counter(
            {(b"8", cl, b"C"): 1 for cl in (b"b1", b"b2", b"e1", b"e2")}
        ), got
        assert h.router.sequencer.accounts.open_orders(ALICE) == 2
        await settled(lambda: usd(h)[1] < 20 * 10**6)
        assert usd(h)[1] == 2 * 7 * 10**6 + usd(h)[1] % 10**6

    run(h, scenario)


# == found: one held matcher stalls every account's balances ==================================


def test_a_held_matcher_does_not_stall_the_balances_of_an_account_it_does_not_hold(
    harness: Held,
) -> None:
    """Was (fixed): with m2 held (SIGSTOP) and ALICE's mass cancel queued at it, BOB, who trades
    on BTC-USD (m1) only, places a sell that m1 takes, and his ``GET account`` is a 504
    ("the router did not answer with balances ...") after 1.25 s: the router labels every
    balance below the oldest command outstanding at *any* matcher (``_applied_label``), so
    BOB's push never covers his Accepted. It should answer his balances, BTC locked for
    the sell: nothing of his waits at m2."""
    h = harness

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(h, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            await rest_orders(h, fix)
            assert (await bob.call("GET", ACCOUNT))["balances"]  # BOB's balances followed
            h.m2_held = True
            await fix.send("q", (11, "mc"), (530, "7"), (60, utc()))
            await settled_fix(fix, ended(2))  # m1's cancels: the mass cancel waits at m2
            await bob.call("POST", ORDER, symbol="BTC-USD", side="SELL", type="LIMIT",
                           price="200.00", quantity="0.10")  # fmt: skip
            bal = await bob.call("GET", ACCOUNT)
            (btc,) = [b for b in bal["balances"] if b["asset"] == "BTC"]
            assert (btc["free"], btc["locked"]) == ("9.900000", "0.100000"), bal
        finally:
            await bob.close()
            h.m2_held = False

    run(h, scenario)
