"""A gateway over real TCP in front of real rings, an in-process router and matcher, and a
simplefix client (an independent FIX implementation) to talk to it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import msgspec
import simplefix  # ships no type information

from config.edges import GatewayConfig, MarketDataConfig
from config.schema import (
    AssetConfig,
    JournalConfig,
    MatcherConfig,
    RingConfig,
    RingexConfig,
    RiskConfig,
    SymbolConfig,
    WaitConfig,
)
from procs.common.record_codec import RecordCodec
from procs.common.records import CreateAccount, Record, Transfer
from procs.common.topology import (
    ADMIN_GATEWAY,
    create_rings,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    users_path,
)
from procs.common.users import UserStore
from procs.gateway.server import GatewayServer
from procs.matcher.main import MatcherShell
from procs.router.main import RouterShell
from shm import Ring

CODEC = RecordCodec()
USD, BTC = 1, 2
FUNDER = ADMIN_GATEWAY  # the harness funds accounts as `ringex admin` does


def config(instance: str, var: Path, **gateway: object) -> RingexConfig:
    return RingexConfig(
        instance=instance,
        ring=RingConfig(capacity=4096),
        wait=WaitConfig(strategy="sleep", min_sleep_s=1e-4, max_sleep_s=1e-3),
        assets=[
            AssetConfig(name="USD", id=USD, decimals=6),
            AssetConfig(name="BTC", id=BTC, decimals=6),
        ],
        symbols=[
            SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=2, tick=5, base="BTC")
        ],
        matchers=[MatcherConfig(name="m1", symbols=["BTC-USD"], snapshot_every=0)],
        gateways=[GatewayConfig(name="gw1", id=1, port=0, **gateway)],  # type: ignore[arg-type]
        marketdata=MarketDataConfig(enabled=False),
        risk=RiskConfig(max_open_orders=100, max_commands_per_s=1_000_000, fee_account=99),
        journal=JournalConfig(fsync="none"),
        var_dir=str(var),
    )


def small_ring_exchange(
    instance: str,
    var: Path,
    capacity: int,
    *,
    users: Sequence[str] = ("ALICE",),
    wait: WaitConfig | None = None,
    max_open_orders: int | None = None,
    **gateway: object,
) -> Harness:
    """A harness whose rings hold ``capacity`` records, with ``users`` (accounts 7, 8, ...)
    added and funded; ``wait`` and the risk's ``max_open_orders`` replaced where given.

    Its matchers' batches are small: the harness steps the matcher in the gateway's loop, and
    a batch whose events outgrow a small ring would wait forever for the gateway to read them."""
    cfg = config(instance, var, **gateway)
    matchers = [msgspec.structs.replace(m, batch=16) for m in cfg.matchers]
    cfg = msgspec.structs.replace(cfg, ring=RingConfig(capacity=capacity), matchers=matchers)
    if wait is not None:
        cfg = msgspec.structs.replace(cfg, wait=wait)
    if max_open_orders is not None:
        risk = msgspec.structs.replace(cfg.risk, max_open_orders=max_open_orders)
        cfg = msgspec.structs.replace(cfg, risk=risk)
    h = Harness(cfg)
    for k, comp in enumerate(users):
        h.add_user(comp, "secret", 7 + k)
        h.fund(7 + k)
    return h


class Harness:
    """Rings, router, matcher and a gateway, all stepped by one asyncio loop."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.cfg = cfg
        inst = cfg.instance
        self.rings = create_rings(cfg, CODEC)
        self.funder = Ring.attach(inst, gateway_commands(FUNDER), CODEC).producer()
        self.funder_replies = Ring.attach(inst, gateway_replies(FUNDER), CODEC).consumer(
            gateway_consumer(FUNDER)
        )
        self.users = UserStore(users_path(cfg))
        self.router = RouterShell(cfg)
        self.matcher = MatcherShell(cfg, "m1")
        self.gateway: GatewayServer | None = None
        self._task: asyncio.Task[None] | None = None

    def add_user(self, comp_id: str, password: str, account: int, **kw: object) -> None:
        self.users.add(comp_id, password, account, n=1 << 4, **kw)  # type: ignore[arg-type]

    def fund(self, account: int, usd: int = 10**12, btc: int = 10**12) -> None:
        commands: list[Record] = [CreateAccount(0, 0, FUNDER, 1, account * 10, account)]
        commands.append(
            Transfer(0, 0, FUNDER, 1, account * 10 + 1, account, USD, usd, account * 10 + 1)
        )
        commands.append(
            Transfer(0, 0, FUNDER, 1, account * 10 + 2, account, BTC, btc, account * 10 + 2)
        )
        self.funder.publish_batch(commands)
        self.step_pipeline()
        self.funder_replies.read(64)

    def step_pipeline(self) -> int:
        done = 0
        while True:
            n = self.router.step(timeout_s=0) + self.matcher.step(timeout_s=0)
            if not n:
                break
            done += n
        self.router.settle()
        return done

    def caught_up(self) -> bool:
        """Whether the router has read every ring it reads and the gateway every ring of its
        events: the router and matcher step together in ``_pipeline``, so what the router
        read the matcher has acted on, and its events wait for the gateway alone."""
        gw = self.gateway
        return all(c.sequence >= c.ring.cursor() for _g, c in self.router.inputs) and (
            gw is None or all(c.sequence >= c.ring.cursor() for c in gw.inputs)
        )

    async def start(self) -> int:
        self.gateway = GatewayServer(self.cfg, "gw1")
        await self.gateway.start()
        self._task = asyncio.get_running_loop().create_task(self._pipeline())
        return self.gateway.port

    def pause(self) -> None:
        """Stop stepping the router and matcher: commands wait in the rings."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def resume(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pipeline())

    def resume_paced(self) -> None:
        """``resume``, stepping the router and matcher only while the gateway keeps up: in
        one loop, a matcher that filled the gateway's ring would wait for it forever."""
        gw = self.gateway
        assert gw is not None and self._task is None
        room = self.cfg.ring.capacity // 2

        async def pipeline() -> None:
            while True:
                lag = max((c.ring.cursor() - c.sequence for c in gw.inputs), default=0)
                busy = 0
                if lag < room:
                    busy = self.router.step(timeout_s=0) + self.matcher.step(timeout_s=0)
                    self.router.settle()
                await asyncio.sleep(0 if busy else 0.0005)

        self._task = asyncio.get_running_loop().create_task(pipeline())

    async def _pipeline(self) -> None:
        while True:
            busy = self.step_pipeline()
            await asyncio.sleep(0 if busy else 0.0005)

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.shutdown(grace_s=0.2)
            self.gateway = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def close(self) -> None:
        self.router.close()
        self.matcher.close()
        self.funder.close()
        self.funder_replies.close()


async def settled(done: Callable[[], bool], timeout_s: float = 3.0) -> None:
    """Wait (in the loop that steps the pipeline) until ``done()``, at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def utc(offset_s: float = 0.0) -> bytes:
    ns = time.time_ns() + int(offset_s * 1e9)
    return time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(ns // 10**9)).encode() + b".%03d" % (
        ns // 10**6 % 1000
    )


class Client:
    """A FIX client built on simplefix: its own encoder and parser, not the gateway's."""

    def __init__(self, comp_id: str, target: str = "RINGEX") -> None:
        self.comp_id, self.target = comp_id, target
        self.seq = 1
        self.parser = simplefix.FixParser()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.received: list[simplefix.FixMessage] = []

    async def connect(
        self, port: int, local: str | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        """A new connection, read from its first byte: what the parser held of the last one
        (messages framed, not yet taken) went with it, and is not taken for this one's.
        ``local``: the client's address (127.0.0.2 say: another peer than 127.0.0.1);
        ``tls``: over TLS, trusting what that context trusts."""
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, local_addr=None if local is None else (local, 0), ssl=tls,
            server_hostname="localhost" if tls is not None else None,
        )  # fmt: skip
        self.parser = simplefix.FixParser()
        OPEN.append(self)

    def message(
        self, msg_type: str, *pairs: tuple[int, object], seq: int | None = None, **header: object
    ) -> simplefix.FixMessage:
        m = simplefix.FixMessage()
        m.append_pair(8, "FIX.4.4", header=True)
        m.append_pair(35, msg_type, header=True)
        m.append_pair(49, header.get("sender", self.comp_id), header=True)
        m.append_pair(56, self.target, header=True)
        m.append_pair(34, self.seq if seq is None else seq, header=True)
        if header.get("poss_dup"):
            m.append_pair(43, "Y", header=True)
        if header.get("poss_resend"):
            m.append_pair(97, "Y", header=True)
        m.append_pair(52, header.get("sending_time", utc()), header=True)
        if header.get("orig_sending_time"):
            m.append_pair(122, header["orig_sending_time"], header=True)
        for tag, value in pairs:
            m.append_pair(tag, value)
        if seq is None:
            self.seq += 1
        return m

    async def send(
        self, msg_type: str, *pairs: tuple[int, object], seq: int | None = None, **header: object
    ) -> None:
        await self.send_raw(self.message(msg_type, *pairs, seq=seq, **header).encode())

    async def send_raw(self, raw: bytes) -> None:
        assert self.writer is not None
        self.writer.write(raw)
        await self.writer.drain()

    async def recv(self, timeout: float = 2.0) -> simplefix.FixMessage | None:
        """The next message, or None at EOF or timeout."""
        assert self.reader is not None
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            msg = self.parser.get_message()
            if msg is not None:
                self.received.append(msg)
                return msg
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            try:  # not wait_for: on 3.11 a cancel racing incoming data can be lost there
                async with asyncio.timeout(left):
                    data = await self.reader.read(65536)
            except TimeoutError:
                return None
            if not data:
                return None
            self.parser.append_buffer(data)

    async def expect(self, msg_type: str, timeout: float = 2.0) -> simplefix.FixMessage:
        """The next message of ``msg_type``, skipping heartbeats; fails on anything else."""
        while True:
            msg = await self.recv(timeout)
            assert msg is not None, f"expected 35={msg_type}, got nothing"
            kind = msg.get(35).decode()
            if kind == "0" and msg_type != "0":
                continue
            assert kind == msg_type, f"expected 35={msg_type}, got {msg}"
            return msg

    async def logon(
        self, password: str = "secret", hb: int = 30, reset: bool = False, timeout: float = 2.0
    ) -> simplefix.FixMessage:
        pairs: list[tuple[int, object]] = [(98, 0), (108, hb)]
        if reset:
            pairs.append((141, "Y"))
        pairs.append((554, password))
        await self.send("A", *pairs)
        return await self.expect("A", timeout)

    async def closed(self, timeout: float = 2.0) -> bool:
        """True when the gateway closes the connection (messages before EOF are kept)."""
        while True:
            msg = await self.recv(timeout)
            if msg is None:
                assert self.reader is not None
                return self.reader.at_eof()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    async def aclose(self) -> None:
        if self in OPEN:  # closed here: not again by close_all, maybe in another loop
            OPEN.remove(self)
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


#: Clients connected in the running scenario (``close_all`` ends them inside the loop).
OPEN: list[Client] = []


async def close_all() -> None:
    while OPEN:
        await OPEN.pop().aclose()


#: A scenario: the harness and the gateway's FIX port.
Scenario = Callable[[Harness, int], Awaitable[None]]


def run_scenario(h: Harness, scenario: Scenario, limit_s: float = 20.0) -> None:
    """Start the gateway, run ``scenario`` within ``limit_s``, then close the clients, stop
    the gateway and close the harness, whatever happened."""

    async def main() -> None:
        port = await h.start()
        try:
            await asyncio.wait_for(scenario(h, port), limit_s)
        finally:
            await close_all()
            await h.stop()

    try:
        asyncio.run(main())
    finally:
        h.close()
