"""Review 37 of the day's change (c01b187..HEAD): the poll loop that waits for a full router
ring instead of spinning on it (8344c70), the read that publishes once ``burst_limit``
commands wait (c01ffc7), and the history's row keysets with migration 0011 (4614313).

One fault, shown first: room the router makes in its ring without answering on a ring the
gateway watches did not end the gateway's nap. The router answers nothing to a
``WatchBalances`` whose lease is 0 (the REST API's end of an account's watch) nor to a
journaled order it reads again after a restart; a step of only those commits the ring, and
the commit posted nothing the loop watched, so the commands the gateway held waited out its
nap: ``held_nap_s``, the wait strategy's bound (``park_timeout_s`` of a blocking one, up to
10 s, cut to about 1 s by the timers' ``submit``). Before the change the loop spun there and
published at once. Now a consumer's commit writes the FIFO of a producer whose parked word
says ``WATCHED`` (``shm/consumer.py``), and the gateway's waker watches it while commands
wait for room with nothing moving (``RingWaker``'s ``room_for``).

The rest pin what held when tried, each named for the scenario: a router that answers wakes
the held naps of every wait strategy (and of ``park_after_ms = 0``, which has no waker);
reads of several connections in one pass stop at one bound; a publish from ``after_input``
keeps the order log before the ring, the audit lines before the log and a store's
MsgSeqNums after both; a REST client far ahead has one command in flight per connection
however much it pipelines; and migration 0011 on a database whose trades are partitioned
already indexes every partition, one made later, and one detached and attached again,
while the keyset queries answer the edge cases as a plain query does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import posix_ipc
import psycopg
import pytest

from config.schema import RingexConfig, WaitConfig
from procs.common.records import WatchBalances
from procs.dbwriter.migrate import MIGRATIONS, migrate
from procs.gateway.connection import Connection
from procs.gateway.history import History
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from procs.gateway.server import GatewayServer
from shm import Ring
from shm.wait import WATCHED
from tests.unit.dbwriter.history_query import query_history
from tests.unit.gateway.harness import Harness, run_scenario, settled, small_ring_exchange
from tests.unit.gateway.rest_rig import LIMIT, client, request, rest_exchange, run, statuses
from tests.unit.gateway.test_adversarial_fix import logged_on, order
from tests.unit.shm.test_review_shm_bugs import CODEC

CAPACITY = 64
#: The risk's open-order limit here: every order accepted.
MOST_OPEN = 10_000
#: A nap long enough that a wake-up by its timer is told from one by the router at a glance.
LONG_NAP_S = 0.5
#: The most a wake-up by the router may take here (a loaded 2-core machine): a tenth of it.
PROMPT_S = 0.1
#: The most a wake-up by the router's commit may take: under the waker's own look at its
#: rings (``ring_waker.PARK_S``, 50 ms), which would find the room too; ~0.2 ms measured.
PROMPT_ROOM_S = 0.02
#: Long enough past ``park_after_ms`` (100) that the loop naps as for a stopped router.
PARKED_S = 0.15


async def _published_after(gw: GatewayServer, at: int, limit_s: float) -> float:
    """Seconds until the gateway's producer moves past ``at`` (``limit_s`` at most)."""
    t0 = time.perf_counter()
    while gw.producer.sequence == at and time.perf_counter() - t0 < limit_s:
        await asyncio.sleep(0)
    return time.perf_counter() - t0


async def _in_a_held_nap(gw: GatewayServer, napping: bool = True) -> None:
    """Return inside the first held nap after a tick of the gateway's timers (whose
    ``submit`` ends any nap once a second while commands wait): ``park_after_ms`` (100) after
    the tick, the loop naps ``held_nap_s`` (``LONG_NAP_S``), and nothing else ends that nap
    for as long, the next tick ~0.9 s away."""
    ticks: list[float] = []
    submit = gw.submit

    def noted() -> None:
        ticks.append(time.perf_counter())
        submit()

    gw.submit = noted  # type: ignore[method-assign]  # a spy on the instance
    try:
        await settled(lambda: bool(ticks), 2.0)
    finally:
        del gw.submit  # the class's again
    assert ticks, "no tick of the timers in 2 s"
    await asyncio.sleep(PARKED_S - (time.perf_counter() - ticks[0]))
    assert gw._nap is not None or not napping, "the poll loop is not napping"


_LONG_NAPS = [
    pytest.param(WaitConfig(park_timeout_s=LONG_NAP_S), id="blocking"),
    pytest.param(WaitConfig(strategy="sleep", max_sleep_s=LONG_NAP_S), id="sleep"),
]


# -- the fault: room made without an answer -----------------------------------------------------


@pytest.mark.parametrize("wait", _LONG_NAPS)
def test_room_the_router_makes_without_answering_wakes_the_gateways_held_nap(
    instance: str, tmp_path: Path, wait: WaitConfig
) -> None:
    """The ring full of watches ended (lease 0: the router answers none), more waiting, the
    router stopped past ``park_after_ms``; then one router step takes the ring and commits
    it, with no record on any ring the gateway reads. The gateway's held commands go out at
    once, not when its nap's timer (``LONG_NAP_S``) or the timers' ``submit`` ends it."""
    h = small_ring_exchange(instance, tmp_path, CAPACITY, wait=wait, max_open_orders=MOST_OPEN)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        h.pause()
        unwatches = [
            WatchBalances(0, time.time_ns(), gw.gw.id, 0, gw.entry.next_ref(), 7, 0)
            for _ in range(CAPACITY + 8)
        ]
        gw.entry.outgoing.extend(unwatches)
        gw.submit()
        await settled(lambda: gw.producer.backlog() == CAPACITY)
        assert gw.entry.outgoing, "the ring took every command: nothing is held"
        at = gw.producer.sequence
        await _in_a_held_nap(gw)
        assert gw.producer.sequence == at and gw.entry.outgoing
        assert h.router.step(timeout_s=0) == CAPACITY  # all of the ring, not one answer
        assert gw.producer.backlog() == 0
        took = await _published_after(gw, at, 3 * LONG_NAP_S)
        assert gw.producer.sequence > at, "the held commands never went out"
        assert took < PROMPT_ROOM_S, (
            f"the held commands went out {took * 1e3:.0f} ms after the router made room "
            f"(its nap's bound: {LONG_NAP_S * 1e3:.0f} ms)"
        )

    run_scenario(h, scenario, 30)


def _posted(fd: int, timeout_s: float) -> bool:
    """Whether ``fd`` (a watched FIFO) turns readable within ``timeout_s``; drains it."""
    if not select.select([fd], [], [], timeout_s)[0]:
        return False
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass
    return True


def test_a_commit_writes_the_fifo_of_a_producer_watched_for_room(instance: str) -> None:
    """The mechanism under the fix (``shm``): while the producer's flag says ``WATCHED``,
    each commit writes its FIFO and leaves its semaphore alone (a post nobody would take:
    its count would only grow); a lowered flag gets nothing; ``has_room`` says what
    ``try_publish_slots`` finds."""
    ring = Ring.create(instance, "room", CODEC, capacity=4, consumers=["c"])
    producer, consumer = ring.producer(), ring.consumer("c", auto_commit=False)
    fd = producer.watch_fd()
    sem = posix_ipc.Semaphore(ring.producer_sem_name())
    try:
        producer.publish_batch([(k, k) for k in range(4)])
        assert not producer.has_room(1)
        producer.raise_park_flag(WATCHED)
        consumer.read(2)
        assert not _posted(fd, 0.05)  # read, not committed: no room yet
        consumer.commit()
        assert _posted(fd, 5.0) and producer.has_room(2) and not producer.has_room(3)
        assert sem.value == 0  # watched, not parked: the semaphore stays quiet
        producer.lower_park_flag()
        consumer.read(2)
        consumer.commit()
        assert not _posted(fd, 0.05) and producer.has_room(4)
    finally:
        sem.close()
        producer.close()
        consumer.close()
        ring.unlink()
        ring.close()


# -- held: a router that answers wakes every strategy's wait --------------------------------------


@pytest.mark.parametrize(
    ("wait", "park_after_ms"),
    [
        *[pytest.param(p.values[0], 100, id=p.id) for p in _LONG_NAPS],
        pytest.param(WaitConfig(strategy="yield"), 100, id="yield"),
        pytest.param(WaitConfig(strategy="busy-spin"), 100, id="busy-spin"),
        pytest.param(WaitConfig(park_timeout_s=LONG_NAP_S), 0, id="no-waker"),
    ],
)
def test_a_router_that_resumes_ends_the_held_wait_of_every_strategy(
    instance: str, tmp_path: Path, wait: WaitConfig, park_after_ms: int
) -> None:
    """Orders past the ring's room, the router stopped past ``park_after_ms``, then resumed:
    its answers end the gateway's nap (or, with ``park_after_ms = 0``, the 1 ms timer does),
    and the held orders go out within ``PROMPT_S``, not the strategy's bound."""
    h = small_ring_exchange(
        instance,
        tmp_path,
        CAPACITY,
        wait=wait,
        max_open_orders=MOST_OPEN,
        park_after_ms=park_after_ms,
    )

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(port, "ALICE")
        h.pause()
        ioc = [(59, 3)]  # nobody sells: each is accepted, then cancelled
        await alice.send_raw(
            b"".join(
                bytes(
                    alice.message("D", *order(f"a{k}", "1", "0.01", "100.00", "2", *ioc)).encode()
                )
                for k in range(CAPACITY + 8)
            )
        )
        await settled(lambda: bool(gw.entry.outgoing))
        at = gw.producer.sequence
        await _in_a_held_nap(gw, napping=wait.strategy != "busy-spin")
        assert gw.producer.sequence == at and gw.entry.outgoing
        h.resume_paced()
        took = await _published_after(gw, at, 3 * LONG_NAP_S)
        assert gw.producer.sequence > at, "the held orders never went out"
        assert took < PROMPT_S, f"the held orders went out {took * 1e3:.0f} ms after the resume"

    run_scenario(h, scenario, 30)


# -- held: a read that publishes at once (``after_input``) --------------------------------------

BURST_ORDERS = 1_500  # per client: many reads' worth each
READ_BYTES = 4 * 1024  # ~25 orders: several reads, of several connections, reach the bound


def test_reads_of_several_connections_in_one_pass_stop_at_one_bound_in_order(
    instance: str, tmp_path: Path
) -> None:
    """Three clients far ahead, read as libuv reads them in one pass of the loop (each
    readable socket again and again, one after another), the router stopped: the commands
    waiting never pass ``burst_limit`` and one read's, whichever connection's read crossed
    it; and each publish a read makes keeps the rules of ``order_logging.py``: the audit
    lines are out before an order log frame of commands, every command is in the log before
    the ring has it, and a session's store saves its MsgSeqNums after the commands it counts
    are logged."""
    h = small_ring_exchange(
        instance, tmp_path, 256, wait=WaitConfig(strategy="sleep"), max_open_orders=MOST_OPEN
    )
    for comp, account in (("BOB", 8), ("CAROL", 9)):
        h.add_user(comp, "secret", account)
        h.fund(account)

    async def scenario(h: Harness, port: int) -> None:
        gw = h.gateway
        assert gw is not None
        clients = [await logged_on(port, comp) for comp in ("ALICE", "BOB", "CAROL")]
        broken: list[str] = []
        write, publish = gw.order_log.write, gw.producer.try_publish_slots

        def logged(entries: Sequence[Any]) -> None:
            if any(e[0] == "C" for e in entries) and gw.audit._entries:
                broken.append(f"a frame of commands before {len(gw.audit._entries)} audit lines")
            write(entries)

        def published(images: Any, count: int) -> bool:
            if gw.producer.sequence + count > gw._logged_to:
                broken.append(f"commands up to {gw.producer.sequence + count} published, "
                              f"logged to {gw._logged_to}")  # fmt: skip
            return publish(images, count)

        def saver(save: Callable[[], None] | None) -> Callable[[], None]:
            def before() -> None:
                if save is not None:
                    save()
                held = gw.producer.sequence + len(gw.entry.outgoing)
                if not gw._in_batch and held > gw._logged_to:
                    broken.append(f"a store saved with commands to {held}, logged to "
                                  f"{gw._logged_to}")  # fmt: skip

            return before

        gw.order_log.write = logged  # type: ignore[method-assign]  # spies on the instances
        gw.producer.try_publish_slots = published  # type: ignore[method-assign]
        for store in gw.stores.values():
            store.before_save = saver(store.before_save)
        waiting: list[int] = []
        after_input = gw.after_input

        def noted(conn: Connection) -> None:
            after_input(conn)
            waiting.append(len(gw.entry.outgoing))

        gw.after_input = noted  # type: ignore[method-assign]
        h.pause()  # the router takes nothing: the ring fills, the commands wait
        bursts = [
            b"".join(
                bytes(c.message("D", *order(f"{c.comp_id}{k}", "1", "0.01", "1.00")).encode())
                for k in range(BURST_ORDERS)
            )
            for c in clients
        ]
        by_comp = {conn.session.comp_id: conn for conn in gw.connections if conn.session}
        conns = [by_comp[c.comp_id] for c in clients]
        most_read, ring_at, read = 0, gw.producer.sequence, set[Connection]()
        for at in range(0, max(map(len, bursts)), READ_BYTES):
            for conn, burst in zip(conns, bursts, strict=True):
                transport = conn.transport
                if transport is not None and transport.is_reading() and at < len(burst):
                    before = len(gw.entry.outgoing)
                    conn.data_received(burst[at : at + READ_BYTES])
                    most_read = max(most_read, waiting[-1] - before)
                    read.add(conn)
        assert len(read) == len(conns), "not every connection was read before the pause"
        assert gw.producer.sequence > ring_at, "no read published: the bound was not reached"
        await settled(lambda: gw.pacing.paused)
        assert gw.pacing.paused and waiting
        assert max(waiting) <= gw.burst_limit + most_read, (
            f"{max(waiting)} commands waited at once, over burst_limit {gw.burst_limit} + "
            f"one read's {most_read}"
        )
        assert not broken, broken[:5]

    run_scenario(h, scenario, 30)


# -- held: migration 0011 on a database with partitions, and the keysets' edges -------------------


def _index_cover(conn: psycopg.Connection[Any], index: str) -> set[str]:
    """The partitions of trades that hold a partition of the partitioned index ``index``."""
    rows = conn.execute(
        "SELECT i.indrelid::regclass::text FROM pg_partition_tree(%s::regclass) t"
        " JOIN pg_index i ON i.indexrelid = t.relid WHERE t.isleaf",
        (index,),
    ).fetchall()
    return {r[0] for r in rows}


def test_migration_0011_indexes_every_partition_old_new_and_reattached(
    dsn: str, tmp_path: Path
) -> None:
    """A database at migration 0010 with days of trades partitioned already, one of them
    detached (as an operator archiving it would), then 0011: every attached partition gets
    both indexes, one made after (``ringex_trade_partitions``) gets them too, and the
    detached one gets them when it is attached again; an order's trades across partitions
    are answered as a plain query answers them."""
    before = tmp_path / "migrations"
    before.mkdir()
    for path in sorted(MIGRATIONS.glob("*.sql")):
        if path.name < "0011":  # the database as 0010 left it (later ones come after 0011)
            (before / path.name).write_text(path.read_text())
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert migrate(conn, before)[-1].startswith("0010")
        conn.execute("SELECT ringex_trade_partitions('2025-01-01', '2025-01-03')")
        conn.execute(
            "INSERT INTO trades SELECT 1, i, i, '2025-01-01'::timestamptz + i * interval '1 h',"
            " 100, 1, 1, 1000 + i % 3, 7, 2000 + i % 2, 8, 0, 0 FROM generate_series(0, 71) i"
        )
        conn.execute("ALTER TABLE trades DETACH PARTITION trades_20250102")
        assert migrate(conn)[0] == "0011_trades_by_order.sql"  # (and any after it)
        conn.execute("SELECT ringex_trade_partitions('2025-01-04', '2025-01-04')")
        conn.execute(
            "ALTER TABLE trades ATTACH PARTITION trades_20250102 FOR VALUES FROM"
            " ('2025-01-02 00:00+00') TO ('2025-01-03 00:00+00')"
        )
        conn.execute(
            "INSERT INTO trades VALUES (1, 72, 72, '2025-01-04 01:00+00', 100, 1, 1, 1000,"
            " 7, 2000, 8, 0, 0)"
        )
        leaves = {
            r[0]
            for r in conn.execute(
                "SELECT relid::regclass::text FROM pg_partition_tree('trades') WHERE isleaf"
            ).fetchall()
        }
        assert leaves == {f"trades_2025010{d}" for d in (1, 2, 3, 4)}
        for index in ("trades_maker_order", "trades_taker_order"):
            assert _index_cover(conn, index) == leaves, index
        want = [
            r[0]
            for r in conn.execute(
                "SELECT trade_id FROM trades WHERE maker_order_id = 1000 AND maker_account_id = 7"
                " ORDER BY trade_id"
            ).fetchall()
        ]
    btc = next(s for s in RingexConfig().symbols if s.id == 1)

    async def asked(h: History) -> list[list[int]]:
        return [
            [t["id"] for t in await h.trades(7, btc, order_id=1000, **q)]
            for q in ({"limit": 1000}, {"from_id": 0, "limit": 1000}, {"limit": 3})
        ]

    newest, oldest_first, last_three = query_history(dsn, asked)
    assert newest == oldest_first == want and last_three == want[-3:]
    assert {t // 24 for t in want} == {0, 1, 2, 3}  # from every day's partition


_T0_MS = 1_735_689_600_000  # 2025-01-01 00:00 UTC
_EDGES: list[dict[str, Any]] = [
    {},
    {"limit": 1},
    {"from_id": 0, "limit": 1},
    {"from_id": 2**63 - 1},
    {"from_id": 7, "start_ms": _T0_MS + 20_000, "end_ms": _T0_MS + 40_000},
    {"from_id": 7, "end_ms": _T0_MS + 30_000, "limit": 3},
    {"start_ms": _T0_MS + 30_000},
    {"end_ms": _T0_MS + 30_000, "limit": 4},  # the newest up to an end: the DESC walk
    {"start_ms": _T0_MS + 30_000, "end_ms": _T0_MS + 30_000},  # one millisecond
    {"start_ms": _T0_MS + 30_001, "end_ms": _T0_MS + 30_000},  # an empty window
    {"start_ms": 0, "end_ms": 2**63 - 1, "limit": 1000},
]


def test_the_keysets_answer_the_edges_as_a_plain_query(dsn: str) -> None:
    """allOrders and myTrades (with and without an orderId: the account's own, another
    account's, 0) at the edges of their bounds, for an account with rows on a symbol and
    one with none there, as a plain filter of all of the account's rows answers them."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        migrate(conn)
        conn.execute("SELECT ringex_trade_partitions('2025-01-01', '2025-01-01')")
        conn.execute(  # account 7 on symbol 1, every other one refused (status 8); 8 on 2
            "INSERT INTO orders SELECT i, CASE WHEN i % 4 = 0 THEN 8 ELSE 7 END,"
            " CASE WHEN i % 4 = 0 THEN 2 ELSE 1 END, 1, 1, 1, 100, 0, 1, 1, 0,"
            " CASE WHEN i % 5 = 0 THEN 8 ELSE i % 4 END, 0, i, t, i, t, 0, 0"
            " FROM generate_series(1, 60) i, LATERAL (SELECT '2025-01-01'::timestamptz"
            " + i * interval '1 s' AS t) s"
        )
        conn.execute(  # 7 the maker of orders 1..3, taker of 5 and 6 (a self-trade at i % 6 = 0)
            "INSERT INTO trades SELECT 1, i, i, '2025-01-01'::timestamptz + i * interval '1 s',"
            " 100, 1, 1, 1 + i % 3, 7, 5 + i % 2, CASE WHEN i % 6 = 0 THEN 7 ELSE 9 END, 0, 0"
            " FROM generate_series(1, 60) i"
        )
        orders = conn.execute(
            "SELECT account_id, symbol_id, id, floor(extract(epoch from created) * 1000)"
            " FROM orders WHERE status <> 8 ORDER BY id"
        ).fetchall()
        sides = conn.execute(
            "SELECT maker_account_id, symbol_id, trade_id, maker_order_id, true,"
            " floor(extract(epoch from ts) * 1000) FROM trades UNION ALL"
            " SELECT taker_account_id, symbol_id, trade_id, taker_order_id, false,"
            " floor(extract(epoch from ts) * 1000) FROM trades ORDER BY 3, 5"
        ).fetchall()
    syms = {s.id: s for s in RingexConfig().symbols}

    def cut(rows: list[Any], q: dict[str, Any], trades: bool = False) -> list[Any]:
        limit = q.get("limit", 500)
        newest = q.get("from_id") is None and q.get("start_ms") is None
        if trades and len(rows) > limit:  # a self-trade's two sides in one page (review 90)
            ends = (rows[-limit - 1], rows[-limit]) if newest else (rows[limit - 1], rows[limit])
            limit += ends[0][0] == ends[1][0]
        return rows[-limit:] if newest else rows[:limit]

    def kept(key: int, ms: float, q: dict[str, Any]) -> bool:
        start, end = q.get("start_ms"), q.get("end_ms")
        return (
            key >= (q.get("from_id") or 0)
            and (start is None or ms >= start)
            and (end is None or ms <= end)
        )

    async def compare(h: History) -> int:
        asked = 0
        for account, symbol in ((7, 1), (7, 2), (8, 1), (8, 2)):
            for q in _EDGES:
                got = [r[0] for r in await h.orders(account, symbol, **q)]
                want = [o[2] for o in orders if o[:2] == (account, symbol) and kept(o[2], o[3], q)]
                assert got == cut(want, q), ("allOrders", account, symbol, q)
                for order_id in (None, 1, 5, 0, 9):
                    answer = await h.trades(account, syms[symbol], order_id=order_id, **q)
                    got_sides = [(t["id"], t["orderId"], t["isMaker"]) for t in answer]
                    want_sides = [
                        (s[2], s[3], s[4])
                        for s in sides
                        if s[:2] == (account, symbol)
                        and (order_id is None or s[3] == order_id)
                        and kept(s[2], s[5], q)
                    ]
                    want_sides = cut(want_sides, q, trades=True)
                    assert got_sides == want_sides, ("myTrades", account, order_id, q)
                    asked += bool(want_sides)
        return asked

    assert query_history(dsn, compare) >= 20  # not only empty answers


# -- held: a REST client far ahead -----------------------------------------------------------------

PIPELINED = 60  # orders per connection, sent at once


@pytest.fixture
def rest_harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _orders(c: RestClient, first: bytes = b"") -> bytes:
    """``first``, then ``PIPELINED`` signed order requests, as one write (pipelined)."""
    out = [first]
    for k in range(PIPELINED):
        body = urlencode(
            {**LIMIT, "quantity": "0.01", "price": f"{1 + k % 50}.00", "timeInForce": "IOC"}
        ).encode()
        signed = c.headers("POST", "/api/v1/order", "", body)
        out.append(
            request(
                b"POST /api/v1/order HTTP/1.1",
                b"Content-Type: application/x-www-form-urlencoded",
                b"Content-Length: %d" % len(body),
                *(f"{k}: {v}".encode() for k, v in signed.items()),
                body=body,
            )
        )
    return b"".join(out)


def test_a_rest_client_far_ahead_has_one_order_in_flight_per_connection(
    rest_harness: Harness,
) -> None:
    """Two connections pipeline ``PIPELINED`` orders each while the router is stopped, one
    served by the fast lane, one handed to aiohttp by the ping before its orders: neither
    puts more than its one order in flight (what a read's burst could reach is one command
    per connection, far under ``burst_limit``), and once the router resumes every order is
    answered, in order."""
    h = rest_harness

    async def scenario(api: RestApi, url: str) -> None:
        gw = h.gateway
        assert gw is not None
        c = await client(url, "ALICE", "alice-pw")
        try:
            h.pause()
            streams = [await asyncio.open_connection("127.0.0.1", api.port) for _ in range(2)]
            ping = request(b"GET /api/v1/ping HTTP/1.1")
            for (_, writer), first in zip(streams, (b"", ping), strict=True):
                writer.write(_orders(c, first))
            most = 0
            for _ in range(50):
                await asyncio.sleep(0.01)
                most = max(most, len(api.core.requests))
            assert 0 < most <= len(streams), f"{most} REST orders in flight on 2 connections"
            h.resume()
            for (reader, writer), first in zip(streams, (b"", ping), strict=True):
                want = PIPELINED + bool(first)
                raw = b""
                while len(statuses(raw)) < want:
                    raw += await asyncio.wait_for(reader.read(1 << 16), 10)
                assert statuses(raw) == [200] * want, raw[-400:]
                writer.close()
                await writer.wait_closed()
        finally:
            await c.close()

    run(h, scenario)
