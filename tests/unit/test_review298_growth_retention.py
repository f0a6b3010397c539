"""Review 298: what grows on disk and in memory over a long run, and how an operator keeps it
bounded.

Reviewed: the files a running instance writes under ``var/<instance>/`` (the journal's
segments, ``durable`` and ``units.json``; ``snapshots/``; each gateway's ``audit.log``,
``orders.log``, ``clordids.log``, ``sessions/<comp>/messages`` and ``seqnums``; the shared
``users.*``, ``apikeys.*`` and ``logged-on/``; the matchers' ``published``) against README's
Disk paragraph; ``procs/common/snapshots.py``, ``procs/gateway/store.py`` (``reset``),
``session_stores.py``, ``sent_commands.py``, ``security_status.py`` (followers),
``user_requests.py`` (answers per user), ``live_sessions.py`` (claims taken after the
password), ``procs/marketdata/server.py`` (``by_address``, ``admitted``),
``procs/core/account_orders.py``, ``procs/core/market/candles.py`` and ``tape.py``,
``procs/common/journal_history.py`` (24 bytes a 65,536-entry block),
``procs/replica/source.py`` (``_digest_cache``), ``procs/dbwriter/store.py`` (sessions).
Reviews 63, 69, 168, 222, 225 and 256 were read first and are not repeated.

Rig: the gateway harness (``tests/unit/gateway/harness.py``: real TCP, real rings, the
router and matcher stepped in one loop) and ``rest_rig`` (real HTTP, API keys). A census
walks the gateway, router and matcher objects and records the length of every dict, set,
list and deque it reaches; a table that grows with traffic is then named and checked
against the bounded tables the code and README document. Disk is measured per order from
the files' sizes.

Faults found: none demonstrated in this area (each probe below held).

Sound (the test_sound_ tests):
- Logon/order/cancel/logout cycles of several users from many client addresses grow only
  the gateway's documented bounded tables (``finished``: ``FINISHED_KEPT``; the ClOrdID
  generations; ``SentCommands``, swept at twice its unanswered; the wrong-password limiter,
  ``max_keys``); nothing in the router or the matcher grows with finished orders, and orders
  the router refuses (no funds) leave nothing behind there either.
- REST logins, orders, cancels and private streams grow only bounded tables (``keep_done``,
  ``MAX_UNFILED_ORDERS``, 20 keys a user, the key limiter's ``max_keys``, the signature
  replay window).
- The journal costs 168 bytes a command, as README's Disk paragraph says; the files that
  grow with orders are exactly the ones README names (journal, audit log, FIX store,
  ``orders.log``, ``clordids.log``); ``seqnums``, ``users.*`` and the claim stay put.
- A Logon with ResetSeqNumFlag empties the session's ``messages`` file (disk freed, not a
  marker appended), as README's retention advice for FIX stores needs.

Leads not shown:
- ``ringex admin remove-user`` leaves the user's FIX store
  (``gateway/<gw>/sessions/<comp>/``) on disk, and a removed user's resting orders (without
  ``--cancel-orders``) keep parking their reports into it; the user can never log on to
  reset it, and README's Disk paragraph gives no procedure for it. Not filed as a fault: a
  user added again under the same comp id takes that store back (README: "the same for a
  session whose user was removed and added again"), so deleting it is not plainly right.
- ``failover.py demote`` sets aside snapshots, gateway state (FIX stores and audit logs) and
  market data state under ``var/<instance>/demoted/<time>/`` at each demote, kept "for the
  operator" with no advice on when they may go; rare, so not measured.
- ``SecurityStatuses.followers`` drops a closed session's subscription only at that
  symbol's next status change; bounded by users x symbols (one entry per session id), so
  not a fault.
"""

from __future__ import annotations

import asyncio
import collections
import os
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import DatabaseConfig
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Client, Harness, config, run_scenario
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange
from tests.unit.gateway.rest_rig import run as rest_run

Census = dict[str, int]

#: Gateway tables that grow with finished orders and distinct addresses, each with its bound.
FIX_BOUNDED = {
    "gw._failed_by_address._buckets",  # RateLimiter: max_keys, least recently seen first out
    "gw.entry.finished",  # FINISHED_KEPT finished orders
    "gw.entry.finished_ids",
    "gw.entry.finished_orders",
    "gw.entry.seen._new",  # two rotating ClOrdID generations
    "gw.sent._sent",  # swept each time it doubles past SWEEP_MIN
}
REST_BOUNDED = {
    "gw.api.core.done",  # keep_done
    "gw.api.core.seen._new",
    "gw.api.core.unfiled._by_account[]",  # MAX_UNFILED_ORDERS
    "gw.api.core.unfiled._orders",
    "gw.api.key_limits._buckets",  # max_keys
    "gw.api.keys._by_user[]",  # max_keys_per_user (20)
    "gw.api.keys._keys",
    "gw.api.verifier._buckets",  # signatures inside their window
    "gw.api.verifier._buckets[]",  # (each bucket's signatures: the same window)
    "gw.api.verifier._kept_until",
    "gw.api.verifier._order",
    "gw.sent._sent",
}
ORDER_FIELDS: tuple[tuple[int, object], ...] = (
    (55, "BTC-USD"), (54, 1), (38, "0.01"), (60, "20250101-00:00:00"),
)  # fmt: skip


def census(root: object, name: str, out: Census, depth: int = 0) -> None:
    """The length of every container reachable from ``root`` through the attributes of the
    project's objects (and the first values of dicts), by attribute path."""
    seen: set[int] = set()

    def walk(obj: object, path: str, depth: int) -> None:
        if id(obj) in seen or depth > 5:
            return
        seen.add(id(obj))
        if isinstance(obj, (dict, set, list, collections.deque, bytearray)):
            out[path] = len(obj)
            if isinstance(obj, dict):
                for value in list(obj.values())[:3]:
                    walk(value, path + "[]", depth + 1)
            return
        module = type(obj).__module__ or ""
        if not module.startswith(("procs", "shm")):
            return
        attrs: dict[str, Any] = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
        for slot in getattr(type(obj), "__slots__", ()) or ():
            if hasattr(obj, slot):
                attrs[slot] = getattr(obj, slot)
        for key, value in attrs.items():
            walk(value, f"{path}.{key}", depth + 1)

    walk(root, name, depth)


def growing(snaps: list[Census]) -> dict[str, list[int]]:
    """The paths whose length rose from the first census to the last (past a handful)."""
    keys = set().union(*snaps)
    rows = {k: [s.get(k, 0) for s in snaps] for k in keys}
    return {k: v for k, v in rows.items() if v[-1] > v[0] and v[-1] >= 3}


def take(h: Harness) -> Census:
    out: Census = {}
    census(h.gateway, "gw", out)
    census(h.router, "router", out)
    census(h.matcher, "matcher", out)
    return out


def fix_harness(instance: str, tmp_path: Path, funds: int = 10**12) -> Harness:
    cfg = config(instance, tmp_path)
    h = Harness(msgspec.structs.replace(cfg, database=DatabaseConfig(enabled=False)))
    for i, user in enumerate(("U0", "U1")):
        h.add_user(user, "pw", 7 + i)
        h.fund(7 + i, usd=funds, btc=funds)
    return h


def sizes(root: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = Path(folder) / name
            out[str(path.relative_to(root))] = path.stat().st_size
    return out


async def order_and_cancel(cl: Client, n: int, tif: int = 0, cancel: bool = True) -> None:
    """A limit buy (TimeInForce ``tif``), then its cancel where ``cancel`` says."""
    d = ((11, f"{cl.comp_id}-{n}"), *ORDER_FIELDS, (40, 2), (44, "100.00"), (59, tif))
    await cl.send("D", *d)
    await cl.expect("8")
    if cancel:
        f = ((11, f"{cl.comp_id}-c{n}"), (41, f"{cl.comp_id}-{n}"), *ORDER_FIELDS)
        await cl.send("F", *f)
        await cl.expect("8")


async def settle(h: Harness, deadline_s: float = 3.0) -> None:
    """Until the gateway has read every event the matcher and router wrote."""
    gw = h.gateway
    assert gw is not None
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while loop.time() < end:
        if all(c.ring.cursor() <= c.sequence for c in gw.inputs):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)


def test_sound_fix_cycles_from_many_addresses_grow_only_bounded_tables(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: two users, each round logging on three times (each from another client
    address), sending three orders and their cancels, subscribing to SecurityStatus and
    logging out; a census after each of three rounds.
    Expected: only the gateway's documented bounded tables grow; nothing in the router or
    the matcher grows with finished orders or ended sessions."""
    snaps: list[Census] = []

    async def scenario(h: Harness, port: int) -> None:
        clients = {u: Client(u) for u in ("U0", "U1")}
        n = 0
        for r in range(3):
            for c in range(3):
                for user, cl in clients.items():
                    await cl.connect(port, local=f"127.0.{r + 1}.{c + 2}")
                    cl.seq = 1  # a reset Logon is MsgSeqNum 1
                    await cl.logon("pw", reset=True)
                    for _ in range(3):
                        n += 1
                        await order_and_cancel(cl, n)
                    await cl.send("e", (324, f"s{n}"), (55, "BTC-USD"), (263, 1))
                    await cl.send("5")
                    assert await cl.closed(3.0), user
                    await cl.aclose()
            await settle(h)
            snaps.append(take(h))

    run_scenario(fix_harness(instance, tmp_path), scenario, 60)
    grown = growing(snaps)
    assert set(grown) <= FIX_BOUNDED, {k: v for k, v in grown.items() if k not in FIX_BOUNDED}
    assert not [k for k in grown if k.startswith(("router", "matcher"))]


def test_sound_orders_the_router_refuses_leave_nothing_in_router_or_matcher(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: an account with no funds sends 300 GTC and IOC buys, each refused by the
    router's risk check or ended by the matcher; a census every 100.
    Expected: the router's client ids and the matcher's books hold none of them; the
    gateway grows only its bounded tables."""
    snaps: list[Census] = []

    async def scenario(h: Harness, port: int) -> None:
        cl = Client("U0")
        await cl.connect(port)
        await cl.logon("pw", reset=True)
        for n in range(300):
            await order_and_cancel(cl, n, tif=3 if n % 2 else 0, cancel=False)
            if n % 100 == 99:
                await settle(h)
                snaps.append(take(h))

    run_scenario(fix_harness(instance, tmp_path, funds=0), scenario, 60)
    grown = growing(snaps)
    assert set(grown) <= FIX_BOUNDED, {k: v for k, v in grown.items() if k not in FIX_BOUNDED}


@pytest.fixture
def rest_harness(instance: str, tmp_path: Path) -> Any:
    yield from rest_exchange(instance, tmp_path)


def test_sound_rest_logins_orders_and_streams_grow_only_bounded_tables(
    rest_harness: Harness,
) -> None:
    """Scenario: three rounds of four REST logins by ALICE, each placing and cancelling three
    orders (client order ids all distinct) and opening and closing its private stream.
    Expected: only ``keep_done``, the unfiled index, the keys (20 a user), the key limiter
    and the signature window grow; nothing in the router."""
    snaps: list[Census] = []
    h = rest_harness

    async def scenario(api: RestApi, url: str) -> None:
        for r in range(3):
            for c in range(4):
                alice = await client(url, "ALICE", "alice-pw")
                try:
                    for k in range(3):
                        placed = await alice.call(
                            "POST", "/api/v1/order", **LIMIT, price="10.00", quantity="0.10",
                            timeInForce="GTC", newClientOrderId=f"r{r}c{c}k{k}",
                        )  # fmt: skip
                        await alice.call(
                            "DELETE", "/api/v1/order", symbol="BTC-USD",
                            orderId=placed["orderId"],
                        )  # fmt: skip
                    ws = await alice.stream()
                    await ws.receive(timeout=2)
                    await ws.close()
                finally:
                    await alice.close()
            await settle(h)
            snaps.append(take(h))

    rest_run(h, scenario)
    grown = growing(snaps)
    assert set(grown) <= REST_BOUNDED, {k: v for k, v in grown.items() if k not in REST_BOUNDED}


def test_sound_disk_per_order_is_what_readme_says(instance: str, tmp_path: Path) -> None:
    """Scenario: 150 orders and their cancels, then 150 more, over one FIX session.
    Expected (README, Disk): a journal entry of 168 bytes a command; the files that grow are
    the journal, the audit log, the FIX store's ``messages``, ``orders.log`` and
    ``clordids.log``; ``seqnums``, the users' files and the session's claim do not."""
    snaps: list[dict[str, int]] = []

    async def scenario(h: Harness, port: int) -> None:
        cl = Client("U0")
        await cl.connect(port)
        await cl.logon("pw", reset=True)
        n = 0
        for _ in range(2):
            for _ in range(150):
                n += 1
                await order_and_cancel(cl, n)
            await settle(h)
            assert h.gateway is not None
            for store in h.gateway.stores.values():
                store.flush()
            h.gateway.audit.flush()
            snaps.append(sizes(tmp_path / instance))

    run_scenario(fix_harness(instance, tmp_path), scenario, 60)
    first, second = snaps
    # (a matcher's ``published`` holds one seq: it "grows" by a digit, now and then)
    grew = {k for k in second if second[k] > first.get(k, 0) and not k.endswith("/published")}
    segment = "journal/00000000000000000001.journal"
    assert (second[segment] - first[segment]) / 300 == 168  # 150 D + 150 F
    gw = "gateway/gw1/"
    assert grew == {
        segment, gw + "audit.log", gw + "orders.log", gw + "clordids.log",
        gw + "sessions/U0/messages",
    }, grew  # fmt: skip


def test_sound_a_reset_logon_empties_the_sessions_store(instance: str, tmp_path: Path) -> None:
    """Scenario: 100 orders and cancels fill a session's ``messages``; the session logs out
    and logs on again with ResetSeqNumFlag (141=Y).
    Expected: the file is cut back to what the new session has sent (its Logon), freeing the
    disk, as README's advice (the daily reset) for FIX stores relies on."""
    measured: list[int] = []

    async def scenario(h: Harness, port: int) -> None:
        cl = Client("U0")
        messages = tmp_path / instance / "gateway" / "gw1" / "sessions" / "U0" / "messages"
        await cl.connect(port)
        await cl.logon("pw", reset=True)
        for n in range(100):
            await order_and_cancel(cl, n)
        await cl.send("5")
        assert await cl.closed(3.0)
        await cl.aclose()
        measured.append(messages.stat().st_size)
        cl.seq = 1
        await cl.connect(port)
        await cl.logon("pw", reset=True)
        assert h.gateway is not None
        for store in h.gateway.stores.values():
            store.flush()
        measured.append(messages.stat().st_size)

    run_scenario(fix_harness(instance, tmp_path), scenario, 60)
    before, after = measured
    assert before > 100 * 400 and after < 1_000, measured
