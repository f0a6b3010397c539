"""The load generator of `make bench-rest`: lanes that each keep one request in flight (a
lean signing HTTP/1.1 client, aiohttp's ``RestClient``, or a FIX session), closed- and
open-loop schedules, and the child process a phase runs in."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from decimal import Decimal
from multiprocessing.connection import Connection
from typing import Any, NamedTuple, TypeVar
from urllib.parse import quote

import msgspec
import uvloop
from hdrh.histogram import HdrHistogram

from procs.gateway.fix import Timestamps, fields, frame
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.gateway.signing import API_KEY, RECV_WINDOW, SIGNATURE, TIMESTAMP, sign
from tests.bench.fix_load import new_histogram, record_clamped
from tests.bench.pacer import Pacer

USD, BTC, ETH = 1, 2, 3  # the default assets; BTC-USD and ETH-USD: 2 price, 4 qty decimals
#: Per path: the symbol, its base asset, (buyer, seller) accounts.
MARKETS = {"rest": ("BTC-USD", BTC, (101, 102)), "fix": ("ETH-USD", ETH, (201, 202))}
UNITS_PER_LOT = 10 ** (8 - 4)  # base assets have 8 decimals, quantities 4
AGGRESSIVE = ("100.01", "99.99")  # the buyer's, the seller's: each crosses the other's
PASSIVE = ("99.00", "101.00")
BUY_QTY, SELL_QTY = ("0.0100", "0.0300"), "0.0200"  # the buyer alternates: partial fills
ORDER_PATH = "/api/v1/order"
BATCH_PATH = "/api/v1/batchOrders"
FORM = "application/x-www-form-urlencoded"
WINDOW_MS = 60_000
P = TypeVar("P", bound=asyncio.Protocol)
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


class Answer(NamedTuple):
    ok: bool
    status: str
    ref: Any  # what cancels the order: its orderId (REST), its ClOrdID (FIX)
    taker_lots: int  # REST: the fills the request's own command made as taker
    detail: str = ""
    ahead: bool = False  # REST: executedQty counts fills that came after the answer's fills


def lots(text: str | bytes) -> int:
    return int(Decimal(text.decode() if isinstance(text, bytes) else text) * 10**4)


# -- lanes: one request in flight each ----------------------------------------------------------


class Lane:
    """A REST connection, or a worker on a FIX session: ``order`` and ``cancel`` send one
    request and return its answer; ``home`` is where its orders can be cancelled from."""

    user: int  # 0 buys, 1 sells
    home: object
    crossed = 0  # aggressive orders sent

    async def order(self, passive: bool) -> Answer:
        raise NotImplementedError

    def quantity(self, passive: bool) -> str:
        """The seller's is 0.02; the buyer's aggressive ones alternate 0.01 and 0.03, so
        fills are partial both ways and the sides trade the same volume: the book stays
        small. (Alternating by the request count gave a REST buyer 0.03 every time, as its
        aggressive orders were always the odd ones: ~600 buys a second came to rest.)"""
        if not passive:
            self.crossed += 1
        return SELL_QTY if self.user else BUY_QTY[self.crossed % 2]

    async def cancel(self, ref: Any) -> Answer:
        raise NotImplementedError

    async def orders(self, passive: list[bool]) -> list[Answer]:
        """An order each (passive or not), in one ``batchOrders`` request (FIX: in turn)."""
        return [await self.order(p) for p in passive]

    async def cancels(self, refs: list[Any]) -> list[Answer]:
        """A cancel each, in one ``DELETE batchOrders`` request (FIX: in turn)."""
        return [await self.cancel(ref) for ref in refs]


class RestLane(Lane):
    """The request mix as REST calls; ``call`` is the HTTP client's."""

    def __init__(self, user: int, tag: str) -> None:
        self.user, self.home, self.tag, self.n = user, user, tag, 0

    async def call(
        self, method: str, query: str, body: bytes, path: str = ORDER_PATH, kind: str = FORM
    ) -> tuple[int, Any]:
        """(status, decoded answer) of a request with ``body`` of content type ``kind``."""
        raise NotImplementedError

    def params(self, passive: bool) -> dict[str, str]:
        self.n += 1
        u = self.user
        return {
            "symbol": "BTC-USD", "side": "SELL" if u else "BUY", "type": "LIMIT",
            "timeInForce": "GTC", "price": (PASSIVE if passive else AGGRESSIVE)[u],
            "quantity": self.quantity(passive), "newClientOrderId": f"{self.tag}-{self.n}",
        }  # fmt: skip

    async def order(self, passive: bool) -> Answer:
        body = "&".join(f"{k}={v}" for k, v in self.params(passive).items()).encode()
        status, doc = await self.call("POST", "", body)
        return self.judged(passive, status, doc)

    async def orders(self, passive: list[bool]) -> list[Answer]:
        status, docs = await self.batch([self.params(p) for p in passive])
        if status != 200 or not isinstance(docs, list):
            return [Answer(False, f"HTTP {status}", None, 0, str(docs)[:200])] * len(passive)
        return [self.judged(p, 200, doc) for p, doc in zip(passive, docs, strict=True)]

    async def cancels(self, refs: list[Any]) -> list[Answer]:
        ids = quote(msgspec.json.encode(refs))
        status, docs = await self.call(
            "DELETE", f"symbol=BTC-USD&orderIdList={ids}", b"", BATCH_PATH
        )
        if status != 200 or not isinstance(docs, list):
            docs = [docs] * len(refs)
        return [self.cancelled(ref, status, doc) for ref, doc in zip(refs, docs, strict=True)]

    def judged(self, passive: bool, status: int, doc: Any) -> Answer:
        if status != 200 or not isinstance(doc, dict) or "status" not in doc:
            return Answer(False, f"HTTP {status}", None, 0, str(doc)[:200])
        state, fills = doc.get("status", ""), doc.get("fills", [])
        ok = state == "NEW" if passive else state in ("NEW", "PARTIALLY_FILLED", "FILLED")
        executed, filled = lots(doc["executedQty"]), sum(lots(f["qty"]) for f in fills)
        ok = ok and executed >= filled
        taker = sum(lots(f["qty"]) for f in fills if not f["isMaker"])
        why = f"orderId={doc.get('orderId')} executedQty={doc.get('executedQty')} fills={fills}"
        return Answer(ok, state, doc["orderId"], taker, "" if ok else why, executed > filled)

    async def batch(self, orders: list[dict[str, str]]) -> tuple[int, Any]:
        """``POST /api/v1/batchOrders``, the array in a JSON body."""
        body = msgspec.json.encode({"batchOrders": orders})
        return await self.call("POST", "", body, BATCH_PATH, "application/json")

    async def cancel(self, ref: Any) -> Answer:
        status, doc = await self.call("DELETE", f"symbol=BTC-USD&orderId={ref}", b"")
        return self.cancelled(ref, status, doc)

    def cancelled(self, ref: Any, status: int, doc: Any) -> Answer:
        state = doc.get("status", "") if isinstance(doc, dict) else ""
        ok = status == 200 and state == "CANCELED"
        return Answer(ok, state or f"HTTP {status}", ref, 0, "" if ok else str(doc)[:200])


class RawHttpLane(RestLane, asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection written by hand: the cheapest honest client (signs
    every request with ``signing.sign`` as ``RestClient`` does), so the gateway is measured."""

    def __init__(self, user: int, tag: str, key: str, secret: str, host: str) -> None:
        super().__init__(user, tag)
        self.key, self.secret, self.host = key, secret, host
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        length = _CONTENT_LENGTH.search(buf, 0, end) if end >= 0 else None
        if length is None or len(buf) < end + 4 + int(length.group(1)):
            self.buf = buf
            return
        stop = end + 4 + int(length.group(1))
        self.buf = buf[stop:]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((int(buf[9:12]), buf[end + 4 : stop]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"the gateway closed the connection: {exc}"))

    async def call(
        self, method: str, query: str, body: bytes, path: str = ORDER_PATH, kind: str = FORM
    ) -> tuple[int, Any]:
        now = time.time_ns() // 1_000_000
        signature = sign(self.secret, now, WINDOW_MS, method, path, query, body)
        head = (
            f"{method} {path}{'?' if query else ''}{query} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"{API_KEY}: {self.key}\r\n{TIMESTAMP}: {now}\r\n{RECV_WINDOW}: {WINDOW_MS}\r\n"
            f"{SIGNATURE}: {signature}\r\n"
        )
        if body:
            head += f"Content-Type: {kind}\r\n"
            head += f"Content-Length: {len(body)}\r\n"
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head.encode() + b"\r\n" + body)
        status, raw = await self.waiter
        return status, msgspec.json.decode(raw) if raw else None


class AiohttpLane(RestLane):
    """The same calls through ``RestClient`` (aiohttp's client): what a Python user runs."""

    def __init__(self, user: int, tag: str, api: RestClient) -> None:
        super().__init__(user, tag)
        self.api = api

    async def call(
        self, method: str, query: str, body: bytes, path: str = ORDER_PATH, kind: str = FORM
    ) -> tuple[int, Any]:
        pairs = (p.partition("=") for p in (query or body.decode()).split("&"))
        params: dict[str, Any] = {name: value for name, _, value in pairs}
        return await self.api.request(method, path, **params)

    async def batch(self, orders: list[dict[str, str]]) -> tuple[int, Any]:
        try:
            return 200, await self.api.batch_orders(orders)
        except ApiCallError as refused:
            return refused.status, refused.body


class FixSession(asyncio.Protocol):
    """One FIX session: sends orders for its workers and resolves each worker's wait on the
    first report for its ClOrdID; counts every fill by side (LastQty); a second ack of a
    ClOrdID is a problem (an error of the phase), whenever it comes."""

    def __init__(self, comp_id: str, user: int) -> None:
        self.comp_id, self.user = comp_id, user
        self.seq = 1
        self.times = Timestamps()
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.pending: dict[bytes, asyncio.Future[Answer]] = {}
        self.fill_lots = [0, 0]  # buy, sell
        self.problems: list[str] = []
        self.acked: set[bytes] = set()  # ClOrdIDs acked in this phase (one load process)
        self.logged_on: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport

    def send(self, msg_type: bytes, *pairs: tuple[int, bytes | str | int]) -> None:
        stamp = self.times.format(time.time_ns())
        body = fields(
            (35, msg_type), (49, self.comp_id), (56, "RINGEX"), (34, self.seq), (52, stamp),
            *pairs,
        )  # fmt: skip
        self.seq += 1
        assert self.transport is not None
        self.transport.write(frame(body))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        start = 0
        while (end := buf.find(b"\x0110=", start)) >= 0 and (
            stop := buf.find(b"\x01", end + 4)
        ) > 0:
            pairs = (p.partition(b"=") for p in buf[start:stop].split(b"\x01"))
            self.message({tag: value for tag, _, value in pairs})
            start = stop + 1
        self.buf = buf[start:]

    def message(self, f: dict[bytes, bytes]) -> None:
        kind = f[b"35"]
        if kind == b"8":
            exec_type = f[b"150"]
            if exec_type == b"F":
                self.fill_lots[f[b"54"] == b"2"] += lots(f[b"32"])
            elif exec_type == b"0":  # a second ack of an order, even after its fill: wrong
                if f[b"11"] in self.acked:
                    self.problems.append(f"a second ack of ClOrdID {f[b'11'].decode()}")
                self.acked.add(f[b"11"])
            future = self.pending.pop(f[b"11"], None)
            if future is not None and not future.done():
                ok = exec_type in (b"0", b"4", b"F")
                detail = "" if ok else f"150={exec_type.decode()} {f.get(b'58', b'').decode()}"
                future.set_result(Answer(ok, exec_type.decode(), f[b"11"], 0, detail))
        elif kind == b"9":
            future = self.pending.pop(f[b"11"], None)
            if future is not None and not future.done():
                future.set_result(Answer(False, "9", None, 0, f.get(b"58", b"").decode()))
        elif kind == b"A" and not self.logged_on.done():
            self.logged_on.set_result(None)
        elif kind == b"1":
            self.send(b"0", (112, f.get(b"112", b"")))
        elif kind in (b"3", b"5", b"j"):
            self.problems.append(f"35={kind.decode()} {f.get(b'58', b'').decode()}")

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError(f"session {self.comp_id} closed: {exc}"))


class FixLane(Lane):
    def __init__(self, session: FixSession, tag: str) -> None:
        self.session = self.home = session
        self.user, self.tag, self.n = session.user, tag, 0

    async def request(self, msg_type: bytes, *pairs: tuple[int, bytes | str | int]) -> Answer:
        self.n += 1
        cl_ord_id = b"%s-%d" % (self.tag.encode(), self.n)
        s = self.session
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        s.pending[cl_ord_id] = future
        s.send(msg_type, (11, cl_ord_id), (55, "ETH-USD"), (54, ("1", "2")[self.user]), *pairs,
               (60, s.times.format(time.time_ns())))  # fmt: skip
        return await future

    async def order(self, passive: bool) -> Answer:
        u = self.user
        answer = await self.request(
            b"D", (38, self.quantity(passive)), (40, "2"), (59, "1"),
            (44, (PASSIVE if passive else AGGRESSIVE)[u]),
        )  # fmt: skip
        return answer._replace(ok=answer.ok and (answer.status == "0" or not passive))

    async def cancel(self, ref: Any) -> Answer:
        answer = await self.request(b"F", (41, ref))
        return answer._replace(ok=answer.ok and answer.status == "4")


# -- the load generator (a child process per phase) ---------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.hist: HdrHistogram = new_histogram()  # us
        self.lag: HdrHistogram = new_histogram()  # the generator's own lateness, open loop
        self.ops: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.errors: list[str] = []
        self.taker_lots = self.ahead = 0
        self.batches = 0  # batchOrders requests, each of several "new" ops
        self.start_ns = self.end_ns = 0

    def record(self, kind: str, t0_ns: int, answer: Answer) -> None:
        self.end_ns = now = time.perf_counter_ns()
        record_clamped(self.hist, max(1, (now - t0_ns) // 1000))
        self.ops[kind] += 1
        self.statuses[answer.status] += 1
        self.taker_lots += answer.taker_lots
        self.ahead += answer.ahead
        if not answer.ok:
            self.errors.append(f"{kind} {answer.status} {answer.detail}")


#: The request mixes (``--mix``): "orders", two new orders (one crossing, one passive) and
#: the passive one's cancel; "crossing", new orders alone, every one through the touch (the
#: sides' sizes differ, so some rest a moment and are taken by the next: the book stays small).
MIXES = ("orders", "crossing")


async def closed_loop(
    lanes: Sequence[Lane], seconds: float, stats: Stats, mix: str = "orders", batch: int = 1
) -> int:
    """Every lane as fast as its answers come; returns the lanes left without an answer.
    With ``batch`` > 1 the crossing mix sends that many orders a request (``Lane.orders``)."""
    clock = time.perf_counter_ns
    stats.start_ns = clock()
    deadline = stats.start_ns + int(seconds * 1e9)
    crossing = mix == "crossing"

    async def run(lane: Lane) -> None:
        while clock() < deadline:
            t = clock()
            if batch > 1:  # crossing: aggressive orders; else aggressive and passive by turns
                stats.batches += 1
                kinds = [not crossing and k % 2 == 1 for k in range(batch)]
                answers = await lane.orders(kinds)
                for answer in answers:
                    stats.record("new", t, answer)
                rest = [a.ref for p, a in zip(kinds, answers, strict=True) if p and a.ok]
                if rest:
                    t = clock()
                    stats.batches += 1
                    for answer in await lane.cancels(rest):
                        stats.record("cancel", t, answer)
                continue
            stats.record("new", t, await lane.order(False))
            if crossing:
                continue
            t = clock()
            placed = await lane.order(True)
            stats.record("new", t, placed)
            if placed.ok:
                t = clock()
                stats.record("cancel", t, await lane.cancel(placed.ref))

    tasks = [asyncio.ensure_future(run(lane)) for lane in lanes]
    return await finish(tasks, seconds + 30, stats)


async def finish(tasks: Sequence[asyncio.Future[Any]], timeout_s: float, stats: Stats) -> int:
    """Wait for the lanes' tasks; cancel those still running after ``timeout_s``; record the
    errors of those that failed. Returns how many were cut off."""
    done, missing = await asyncio.wait(tasks, timeout=timeout_s)
    for task in missing:
        task.cancel()
    for task in done:
        if task.exception() is not None:
            stats.errors.append(repr(task.exception()))
    return len(missing)


async def open_loop(
    lanes: Sequence[Lane], rate: float, seconds: float, stats: Stats, mix: str = "orders"
) -> int:
    """Request k at start + k/rate, whatever came back; returns the requests left unanswered."""
    clock = time.perf_counter_ns
    free: dict[int, asyncio.Queue[Lane]] = {0: asyncio.Queue(), 1: asyncio.Queue()}
    for lane in lanes:
        free[lane.user].put_nowait(lane)
    resting: defaultdict[object, deque[Any]] = defaultdict(deque)
    crossing = mix == "crossing"

    async def one(k: int, planned: int) -> None:
        record_clamped(stats.lag, max(1, (clock() - planned) // 1000))
        lane = await free[k % 2].get()
        try:
            if crossing:
                stats.record("new", planned, await lane.order(False))
                return
            queue = resting[lane.home]
            if (k // 2) % 3 == 2 and queue:
                stats.record("cancel", planned, await lane.cancel(queue.popleft()))
                return
            passive = (k // 2) % 3 != 0
            answer = await lane.order(passive)
            stats.record("new", planned, answer)
            if passive and answer.ok:
                queue.append(answer.ref)
        finally:
            free[k % 2].put_nowait(lane)

    interval = 1e9 / rate
    stats.start_ns = start = clock() + 10_000_000
    tasks = []
    pacer = Pacer()  # asyncio.sleep would start requests up to a millisecond late (pacer.py)
    try:
        for k in range(int(rate * seconds)):
            planned = start + int(k * interval)
            if planned > clock():
                await pacer.until(planned)
            tasks.append(asyncio.ensure_future(one(k, planned)))
    finally:
        pacer.close()
    return await finish(tasks, 30, stats)


async def connect(protocol: P, port: int) -> P:
    await asyncio.get_running_loop().create_connection(lambda: protocol, "127.0.0.1", port)
    return protocol


async def generate(spec: dict[str, Any], pipe: Connection) -> dict[str, Any]:
    n, tag, port = spec["lanes"], spec["tag"], spec["port"]
    lanes: list[Lane] = []
    sessions: list[FixSession] = []
    clients: list[RestClient] = []
    if spec["path"] == "fix":
        for k, comp_id in enumerate(spec["comp_ids"]):
            session = await connect(FixSession(comp_id, k % 2), port)
            session.send(b"A", (98, 0), (108, 30), (141, "Y"), (554, "pw"))
            await asyncio.wait_for(session.logged_on, 10)
            sessions.append(session)
        lanes = [FixLane(sessions[k % len(sessions)], f"{tag}{k}") for k in range(n)]
    elif spec["client"] == "aiohttp":
        for key, secret in spec["keys"]:
            api = RestClient(f"http://127.0.0.1:{port}", connections=n)
            api.api_key, api.secret, api.recv_window_ms = key, secret, WINDOW_MS
            clients.append(api)
        lanes = [AiohttpLane(k % 2, f"{tag}{k}", clients[k % 2]) for k in range(n)]
    else:
        host = f"127.0.0.1:{port}"
        for k in range(n):
            key, secret = spec["keys"][k % 2]
            lanes.append(await connect(RawHttpLane(k % 2, f"{tag}{k}", key, secret, host), port))
    pipe.send("ready")
    pipe.recv()  # go: nothing is in flight, so blocking the loop here costs nothing
    stats = Stats()
    if spec["phase"] == "throughput":
        batch = spec.get("batch", 1) if spec["path"] == "rest" else 1
        missing = await closed_loop(lanes, spec["seconds"], stats, spec["mix"], batch)
    else:
        missing = await open_loop(lanes, spec["rate"], spec["seconds"], stats, spec["mix"])
    pipe.send("done")  # the bench samples CPU now, before the wind-down
    await asyncio.sleep(0.2)  # the fill reports that follow the last acks
    for s in sessions:
        stats.errors += s.problems
        assert s.transport is not None
        s.transport.close()
    for each in lanes:
        if isinstance(each, RawHttpLane) and each.transport is not None:
            each.transport.close()
    for api in clients:
        await api.close()
    elapsed = (stats.end_ns - stats.start_ns) / 1e9
    h, lag = stats.hist, stats.lag
    return {
        "requests": sum(stats.ops.values()), "new": stats.ops["new"],
        "cancels": stats.ops["cancel"], "missing": missing, "errors": len(stats.errors),
        "error_samples": stats.errors[:5], "elapsed_s": elapsed,
        "per_s": sum(stats.ops.values()) / elapsed if elapsed > 0 else 0.0,
        "p50_us": h.get_value_at_percentile(50), "p99_us": h.get_value_at_percentile(99),
        "p999_us": h.get_value_at_percentile(99.9), "max_us": h.get_max_value(),
        "generator_lag_p50_us": lag.get_value_at_percentile(50) if lag.total_count else 0,
        "generator_lag_p99_us": lag.get_value_at_percentile(99) if lag.total_count else 0,
        "batch_requests_per_s": stats.batches / elapsed if elapsed > 0 else 0.0,
        "statuses": dict(stats.statuses), "taker_lots": stats.taker_lots,
        "answers_ahead_of_their_fills": stats.ahead,
        "fill_lots": [sum(s.fill_lots[i] for s in sessions) for i in (0, 1)],
    }  # fmt: skip


def load_process(spec: dict[str, Any], pipe: Connection) -> None:
    """Child process: one phase's load generator (its CPU is its own, not the bench's)."""
    try:
        pipe.send(uvloop.run(generate(spec, pipe)))
    except BaseException as exc:
        pipe.send({"failed": repr(exc)})
        raise
