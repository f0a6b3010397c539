"""The configuration schema: frozen msgspec Structs that forbid unknown keys.

Each field says its unit and its effect; a profile need set only what differs from the
defaults. The sections of the client-serving processes (gateway, REST, market data) live in
``config.edges``, the value types they share in ``config.fields``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Final, Literal

import msgspec

from config.edges import Face, GatewayConfig, MarketDataConfig, check_alike, face
from config.fields import (
    AssetName,
    BasisPoints,
    FeeBps,
    Host,
    Name,
    Port,
    Units,
    address_refused,
    at_most,
    host_and_port,
    host_refused,
    listen_address,
)
from config.refused_value import cut_values

if TYPE_CHECKING:  # shm is imported where a strategy is built: ops scripts load config fast
    from shm.wait import WaitStrategy

WaitName = Literal["busy-spin", "yield", "sleep", "blocking"]
#: Idle rounds a strategy spins before it yields, sleeps or parks, unless ``wait.spins`` says.
#: A blocking stage parks at once: on a machine with fewer cores than stages, a stage that
#: spins takes the core from the stage it waits for. On the 2-core VM, bench-pipeline with
#: 200 spins against none (three runs each, alternated): order -> ack p50 1.42-1.72 ms
#: against 1.05-1.22 ms at 2k orders/s, 12.7-14.0k against 14.2-14.4k acks/s at 20k offered.
DEFAULT_SPINS: Final[dict[str, int]] = {"yield": 200, "sleep": 200, "blocking": 0}


class WaitConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a process does while its ring is empty (or full). See ``shm/wait.py``."""

    #: busy-spin: lowest latency, one core at 100%; yield: cede the core to peers;
    #: sleep: spin, yield, then sleep with backoff; blocking: park on a semaphore (~0% idle CPU).
    strategy: WaitName = "blocking"
    #: Idle rounds spent spinning before yielding, sleeping or parking; unset, the strategy's
    #: own (``DEFAULT_SPINS``).
    spins: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] | None = None
    #: blocking only: longest park in seconds before re-checking (bounds a missed wake-up).
    park_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.02
    #: sleep only: the backoff's first and last sleep, in seconds.
    min_sleep_s: Annotated[float, msgspec.Meta(gt=0, le=1)] = 50e-6
    max_sleep_s: Annotated[float, msgspec.Meta(gt=0, le=1)] = 5e-3

    def __post_init__(self) -> None:
        low, high = self.min_sleep_s, self.max_sleep_s  # else the minimum is ignored
        at_most("wait", "min_sleep_s", low, "max_sleep_s", high)

    def build(self) -> WaitStrategy:
        from shm.wait import wait_strategy  # noqa: PLC0415

        spins = DEFAULT_SPINS.get(self.strategy, 0) if self.spins is None else self.spins
        params: dict[str, float] = {"spins": spins}
        if self.strategy == "blocking":
            params["park_timeout_s"] = self.park_timeout_s
        elif self.strategy == "sleep":
            params |= {"min_sleep_s": self.min_sleep_s, "max_sleep_s": self.max_sleep_s}
        elif self.strategy == "busy-spin":
            params = {}
        return wait_strategy(self.strategy, **params)


class RingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Geometry shared by the pipeline's rings."""

    #: Slots per ring (a power of two). Bytes = capacity x slot size (152 for records).
    capacity: Annotated[int, msgspec.Meta(ge=2, le=1 << 24)] = 1 << 14
    #: Consumer lines reserved in each ring header (declared + late joiners such as taps).
    max_consumers: Annotated[int, msgspec.Meta(ge=1, le=62)] = 16

    def __post_init__(self) -> None:
        if self.capacity & (self.capacity - 1):
            raise ValueError(f"ring.capacity {self.capacity} is not a power of two")


class AssetConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A currency or coin. Balances are integers in its minor unit, 10**-decimals of it."""

    name: AssetName
    id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]  # the database keeps an integer
    decimals: Annotated[int, msgspec.Meta(ge=0, le=18)]


class SymbolConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One tradable symbol. Inside the pipeline prices are integer ticks and sizes integer
    lots; the decimals say how the edges (FIX, REST, the web page) show them."""

    #: What clients call it, e.g. "BTC-USD" (no "/": stream names are split on it).
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9][A-Z0-9._-]{0,23}\Z")]
    #: The integer id records carry (stable: journals and the database use it).
    id: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]  # the database keeps an integer
    #: A valid price is a multiple of ``tick`` integer price units ...
    tick: Units = 1
    #: ... and a price unit is 10**-price_decimals of the quote currency.
    price_decimals: Annotated[int, msgspec.Meta(ge=0, le=12)] = 2
    #: A valid quantity is a multiple of ``lot`` size units of 10**-qty_decimals.
    lot: Units = 1
    qty_decimals: Annotated[int, msgspec.Meta(ge=0, le=12)] = 0
    #: Smallest and largest single order, in size units.
    min_qty: Units = 1
    max_qty: Units = 1_000_000_000
    #: An iceberg may be at most this many slices of its display quantity (ceil(qty /
    #: display), Binance's ICEBERG_PARTS): each slice trades on its own, so this bounds the
    #: trades one command makes against one order.
    iceberg_parts: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    #: Market-order protection: furthest from the best opposite price a market order trades.
    band_bps: BasisPoints = 500
    #: Limit-price collar around the last trade price; 0 turns it off.
    limit_band_bps: BasisPoints = 0
    #: What is bought and sold (base) and what it is paid with (quote): asset names. The
    #: quote asset needs decimals >= price_decimals + qty_decimals and the base asset
    #: decimals >= qty_decimals, so that every notional is a whole number of minor units.
    base: AssetName = "BTC"
    quote: AssetName = "USD"
    #: Fees in basis points of the notional, paid in the quote asset to the fee account.
    maker_fee_bps: FeeBps = 10
    taker_fee_bps: FeeBps = 20

    @property
    def least_qty(self) -> int:
        """The least size an order may have: ``min_qty`` rounded up to a lot."""
        return -(-self.min_qty // self.lot) * self.lot

    @property
    def most_qty(self) -> int:
        """The largest size an order may have: ``max_qty`` rounded down to a lot."""
        return self.max_qty // self.lot * self.lot

    def __post_init__(self) -> None:
        at_most(f"symbol {self.name!r}", "min_qty", self.min_qty, "max_qty", self.max_qty)
        if self.least_qty > self.max_qty:  # no size is a multiple of lot in [min_qty, max_qty]
            raise ValueError(
                f"symbol {self.name!r}: no order size fits: a size is a multiple of lot = "
                f"{self.lot} from min_qty = {self.min_qty} to max_qty = {self.max_qty}"
            )


class MatcherConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One matcher process and the symbols whose books it owns."""

    name: Name
    #: Symbol names this matcher owns; every symbol has exactly one matcher.
    symbols: list[str]
    #: Snapshot the books every this many commands (0: only on demand and at shutdown).
    snapshot_every: Annotated[int, msgspec.Meta(ge=0)] = 1_000_000
    #: Commands taken from the input ring per batch (bounds latency and the output burst).
    batch: Annotated[int, msgspec.Meta(ge=1, le=4096)] = 256

    def __post_init__(self) -> None:
        if not self.symbols:  # its process would refuse to start, stopping the instance
            raise ValueError(
                f"matcher {self.name!r} owns no symbol (symbols = []): give it one or more, "
                "or remove it"
            )
        if twice := sorted({s for s in self.symbols if self.symbols.count(s) > 1}):
            raise ValueError(f"matcher {self.name!r} lists symbol {twice[0]!r} twice")


class DatabaseConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The database writer's PostgreSQL. An empty dsn: the embedded server under var/."""

    #: Run the database writer (it follows the journal, so it never slows the pipeline).
    enabled: bool = True
    dsn: str = ""
    #: Rows per batch and the longest a row waits for its batch.
    batch_rows: Annotated[int, msgspec.Meta(ge=1)] = 10_000
    batch_ms: Annotated[int, msgspec.Meta(ge=1)] = 50
    #: Connections that COPY a batch's trades side by side, each the symbols whose id modulo
    #: this is its number, in a transaction of its own with its own checkpoint (a trade row
    #: with its indexes is most of the server's work; one backend does it on one core).
    trade_lanes: Annotated[int, msgspec.Meta(ge=1, le=16)] = 2
    #: The writer's own replay snapshots (bound its restart time), by commands and seconds.
    snapshot_every: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    snapshot_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    #: Longest pause between retries while PostgreSQL is down (an hour at most).
    retry_max_s: Annotated[float, msgspec.Meta(gt=0, le=3600)] = 5.0


class SupervisorConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the supervisor runs the processes."""

    #: CPUs per process ("router", "matcher-<name>", "gateway-<name>", "marketdata",
    #: "dbwriter"); a process not listed may run on any CPU.
    cores: dict[str, list[Annotated[int, msgspec.Meta(ge=0)]]] = {}
    #: Scheduling niceness per process (same names as ``cores``), set before it starts. The
    #: database writer follows the journal and may lag, so it (and the embedded PostgreSQL it
    #: starts, which inherits it) yields the CPU to the pipeline where they share cores.
    nice: dict[str, Annotated[int, msgspec.Meta(ge=-20, le=19)]] = msgspec.field(
        default_factory=lambda: {"dbwriter": 10}
    )
    #: A process that has to be restarted more than restart_limit times within
    #: restart_window_s stops the instance (a crash loop is not fixed by looping).
    restart_limit: Annotated[int, msgspec.Meta(ge=0)] = 5
    restart_window_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    #: How long a process may take to attach its rings (recovery included).
    ready_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    #: At shutdown, how long to wait for the rings to drain once intake stopped.
    drain_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: A process whose ring holds records for it while neither its position nor its
    #: heartbeat moved for this long is stuck: logged, and with ``restart_stuck`` killed and
    #: restarted like one that crashed. Off by default: a router waiting on a sync standby
    #: with ``sync_timeout_ms = 0`` looks the same, and waits on purpose.
    stuck_after_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    restart_stuck: bool = False
    #: Prometheus metrics at http://metrics_host:metrics_port/metrics (0: a free port, which
    #: `ringex status` shows); metrics = false turns the endpoint off.
    metrics: bool = True
    metrics_host: Host = "127.0.0.1"
    metrics_port: Port = 0
    #: "HH:MM", UTC: each day at this time the supervisor sends END_OF_SESSION to every
    #: symbol, which expires the DAY orders (``procs/supervisor/session_clock.py``). Empty:
    #: never (DAY orders then rest until `ringex admin end-session`).
    session_end_utc: str = ""

    def __post_init__(self) -> None:
        self.session_end_minute()  # a ValueError naming the value

    def session_end_minute(self) -> int | None:
        """Minutes after midnight UTC of the daily session end (0..1439), None when off."""
        text = self.session_end_utc
        if not text:
            return None
        found = re.fullmatch(r"([0-9]{2}):([0-9]{2})", text)
        if found is None or int(found[1]) > 23 or int(found[2]) > 59:
            raise ValueError(
                f"supervisor.session_end_utc {text!r} is not a time HH:MM from 00:00 to 23:59 "
                "(UTC), nor empty (never)"
            )
        return int(found[1]) * 60 + int(found[2])


class ReplicationConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Hot standby. A primary with ``listen_port`` serves its journal to a standby; an
    instance with ``primary`` set is a standby of it (it runs no intake)."""

    #: The primary's replication source listens here (0: no replication).
    listen_port: Port = 0
    listen_host: Host = "127.0.0.1"
    #: "host:port" of the primary's source: this instance is its standby.
    primary: str = ""
    #: "sync": no command reaches a matcher (so no execution report leaves) before the standby
    #: has acknowledged it as durable; "async": the standby follows, its lag is reported.
    mode: Literal["async", "sync"] = "async"
    #: In sync mode, how long the primary waits for the standby's acknowledgement before it
    #: goes on without it (async, loudly logged and reported) until the standby catches up;
    #: 0 waits forever (no acknowledged order can ever be lost, and no order is taken
    #: while the standby is away).
    sync_timeout_ms: Annotated[int, msgspec.Meta(ge=0)] = 1_000
    #: A standby's supervisor starts its promoted instance's processes as it starts, held
    #: after their imports, so that a promotion only releases them
    #: (``procs/supervisor/promotion.py``); false: ``promote`` starts them then.
    prestart: bool = True
    #: Mutual TLS on the link (all three, or none: the link then authenticates no one, and
    #: any peer that reaches the port is shipped the journal, users and API keys, or can
    #: fence the primary: keep it on a private network). Each side presents its certificate
    #: chain and key (PEM) and takes only a peer whose certificate ``tls_ca`` signed, at the
    #: handshake, before any message: give both sides certificates of one private CA.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""

    def __post_init__(self) -> None:
        given = [n for n in ("tls_cert", "tls_key", "tls_ca") if getattr(self, n)]
        if given and len(given) < 3:
            missing = [n for n in ("tls_cert", "tls_key", "tls_ca") if n not in given]
            raise ValueError(
                f"replication: {', '.join(given)} set and {', '.join(missing)} not: mutual "
                "TLS takes all three, or none"
            )

    def primary_address(self) -> tuple[str, int]:
        host, port = host_and_port(self.primary)
        if refused := address_refused(host, port):
            raise ValueError(f"replication.primary {cut_values(repr(self.primary))}{refused}")
        return host, int(port)


class RiskConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Per-account limits the router enforces before sequencing a command."""

    #: Resting plus in-flight orders per account.
    max_open_orders: Annotated[int, msgspec.Meta(ge=1)] = 1_000
    #: Largest price x size of one order, in the quote asset's minor units (0: no limit).
    max_order_notional: Annotated[int, msgspec.Meta(ge=0)] = 0
    #: Commands per account per second (a token bucket of this size and rate).
    max_commands_per_s: Annotated[int, msgspec.Meta(ge=1)] = 1_000
    #: The account that collects fees; the router creates it at startup (an account id:
    #: at most 2**63 - 1, what a record carries).
    fee_account: Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)] = 1


class JournalConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where and how durably the router appends the sequenced command stream."""

    #: batch: fsync every batch before it is routed (group commit); pipelined: the same
    #: promise, the fsync on a thread while the router decides the next batches (held until
    #: durable, so one fsync covers every batch that came meanwhile: for a disk whose fsync
    #: is slow against a batch's work; the database writer, which follows the journal file,
    #: may then read entries a host crash loses, as under interval); interval: fsync at most
    #: every fsync_interval_ms; none: the OS decides (a crash may lose the tail).
    fsync: Literal["batch", "pipelined", "interval", "none"] = "batch"
    fsync_interval_ms: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 5
    #: pipelined: the commands waiting on the gateways' rings from which a batch's fsync goes
    #: to the thread (the router is behind); with fewer it runs inline, as under batch, which
    #: answers sooner at moderate rates (a held batch waits for the fsync in flight, then its
    #: own: at 10k orders/s on a 16-core host, ack p50 710-787 us against 932-1290 with 1).
    #: At most what the router's input rings hold (ring.capacity x (gateways + 1)); a gateway
    #: stops reading its clients well before its ring is full, so keep it far below that.
    pipeline_behind: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 32
    #: A segment file rolls over at this size.
    segment_mb: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 256
    #: Every this many commands the router forks a replay that writes an exchange snapshot,
    #: which bounds restart time: a restart replays at most about this many commands (0: none
    #: by count, `snapshot_every_s` still applies; both 0: only `ringex replay --snapshot`).
    #: Each snapshot's replay starts from the one before, so a smaller number costs no more
    #: replay, only more snapshot writes.
    snapshot_every: Annotated[int, msgspec.Meta(ge=0)] = 200_000
    #: Also snapshot this many seconds after the last snapshot when any command came since,
    #: so a quiet exchange's restart replays little too (0: by count only).
    snapshot_every_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    #: Where `ringex replay --archive` moves the segments no reader needs any more: an
    #: absolute path, on another volume say, which instances may share (each archives into
    #: ``<archive_dir>/<instance>``; a move across file systems is a copy, made durable,
    #: then the original removed); "": ``var/<instance>/journal-archive`` (review 69: on the
    #: instance's own disk, archiving freed none of it). The database writer and the
    #: session-end search read archived segments there.
    archive_dir: str = ""

    def __post_init__(self) -> None:
        if self.archive_dir and not self.archive_dir.startswith("/"):
            raise ValueError(
                f"journal.archive_dir {self.archive_dir!r} must be an absolute path (or empty)"
            )


class GcConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """CPython's cyclic garbage collector in every process, set once the process is ready
    (``procs/common/gc_policy.py`` says why and what it measured)."""

    #: Once ready, collect and freeze (``gc.freeze``): what startup and recovery built (a
    #: restored book, the accounts, the order memory) is never walked by a collection again.
    freeze: bool = True
    #: Net new container objects between young collections (CPython's threshold0).
    threshold0: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = 700
    #: Young collections between middle ones (threshold1).
    threshold1: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 10
    #: Middle collections between full ones (threshold2); 0: a full collection, which walks
    #: every live object (340 ms in a matcher holding 1M orders) and stops the process for
    #: it, never starts on its own.
    threshold2: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 0


DEFAULT_ASSETS = [
    AssetConfig(name="USD", id=1, decimals=6),
    AssetConfig(name="BTC", id=2, decimals=8),
    AssetConfig(name="ETH", id=3, decimals=8),
]

DEFAULT_SYMBOLS = [
    SymbolConfig(name="BTC-USD", id=1, price_decimals=2, qty_decimals=4, base="BTC"),
    SymbolConfig(name="ETH-USD", id=2, price_decimals=2, qty_decimals=4, base="ETH"),
]


#: An instance name: it prefixes shared-memory names and names directories under var/.
INSTANCE_PATTERN = r"^[A-Za-z0-9_-]{1,48}\Z"


class RingexConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A whole ringex instance."""

    #: Prefix of every shared-memory name, so instances on one host never collide.
    instance: Annotated[str, msgspec.Meta(pattern=INSTANCE_PATTERN)] = "dev"
    ring: RingConfig = RingConfig()
    #: Wait strategy of every stage unless a stage overrides it.
    wait: WaitConfig = WaitConfig()
    assets: list[AssetConfig] = msgspec.field(default_factory=lambda: list(DEFAULT_ASSETS))
    symbols: list[SymbolConfig] = msgspec.field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    matchers: list[MatcherConfig] = msgspec.field(
        default_factory=lambda: [MatcherConfig(name="m1", symbols=["BTC-USD", "ETH-USD"])]
    )
    gateways: list[GatewayConfig] = msgspec.field(
        default_factory=lambda: [GatewayConfig(name="gw1", id=1)]
    )
    supervisor: SupervisorConfig = SupervisorConfig()
    marketdata: MarketDataConfig = MarketDataConfig()
    database: DatabaseConfig = DatabaseConfig()
    risk: RiskConfig = RiskConfig()
    journal: JournalConfig = JournalConfig()
    replication: ReplicationConfig = ReplicationConfig()
    gc: GcConfig = GcConfig()
    #: Sequenced commands the router takes from all gateways per batch (one journal write).
    router_batch: Annotated[int, msgspec.Meta(ge=1, le=65_536)] = 4096
    #: Where journals, snapshots and benchmark results go (git ignores it).
    var_dir: str = "var"

    def __post_init__(self) -> None:
        names = [s.name for s in self.symbols]
        ids = [str(s.id) for s in self.symbols]
        for what, values in (("symbol name", names), ("symbol id", ids)):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{what} {', '.join(dupes)} is configured twice")
        owner: dict[str, str] = {}
        for matcher in self.matchers:
            for symbol in matcher.symbols:
                if symbol not in names:
                    raise ValueError(
                        f"matcher {matcher.name!r} owns symbol {symbol!r}, which is not in "
                        f"[[symbols]] ({', '.join(names)})"
                    )
                if symbol in owner:
                    raise ValueError(
                        f"symbol {symbol!r} is owned by matchers {owner[symbol]!r} and "
                        f"{matcher.name!r}; each symbol has one matcher"
                    )
                owner[symbol] = matcher.name
        if unowned := [n for n in names if n not in owner]:
            raise ValueError(f"no matcher owns symbol(s) {', '.join(unowned)}")
        self._check_assets()
        gateway_ids = [str(g.id) for g in self.gateways]
        if dupes := sorted({v for v in gateway_ids if gateway_ids.count(v) > 1}):
            raise ValueError(f"gateway id {', '.join(dupes)} is configured twice")
        self._check_processes()
        self._check_listeners()
        self._check_journal()

    def _check_journal(self) -> None:
        """A ``pipeline_behind`` the gateways' rings (and the admin's) can hold."""
        reach = self.ring.capacity * (len(self.gateways) + 1)
        if self.journal.fsync == "pipelined" and self.journal.pipeline_behind > reach:
            raise ValueError(
                f"journal.pipeline_behind {self.journal.pipeline_behind} is more commands than "
                f"the router's {len(self.gateways) + 1} input rings of ring.capacity "
                f"{self.ring.capacity} hold ({reach}): the fsync would never go to its thread"
            )

    def _check_processes(self) -> None:
        """Names that pick one process each, and rings enough lines for their readers."""
        if not self.matchers:
            raise ValueError("no [[matchers]]: an exchange needs at least one")
        for what, values in (
            ("matcher name", [m.name for m in self.matchers]),
            ("gateway name", [g.name for g in self.gateways]),
        ):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"{what} {', '.join(dupes)} is configured twice")
        for g in self.gateways:
            if g.name == "admin":  # review 50: the metrics' two series, one broken scrape
                raise ValueError(
                    "gateway name 'admin' is the admin rings' (its metrics would share their "
                    'series, gateway="admin"): pick another'
                )
        for m in self.matchers:
            if re.fullmatch(r"gw\d+", m.name):
                raise ValueError(
                    f"matcher name {m.name!r} is a gateway's (its counters page would be "
                    f"shared with gateway {m.name[2:]}): pick another"
                )
            if m.name in ("router", "dbwriter"):  # reviews 102, 263: each one's start would
                raise ValueError(  # replace the other's page
                    f"matcher name {m.name!r} is the {m.name}'s (its counters page, stats-"
                    f"{m.name}, would be shared with the {m.name}'s): pick another"
                )
        readers = 1 + len(self.gateways) + (1 if self.marketdata.enabled else 0)
        if readers > self.ring.max_consumers:
            raise ValueError(
                f"ring.max_consumers = {self.ring.max_consumers}, but a matcher's output ring "
                f"has {readers} readers (the router, {len(self.gateways)} gateway(s)"
                f"{', market data' if self.marketdata.enabled else ''})"
            )
        if self.replication.primary:
            self.replication.primary_address()  # host:port, or a ValueError naming it
        known = {"router", "marketdata", "dbwriter", "standby", "replica"}
        known |= {f"matcher-{m.name}" for m in self.matchers}
        known |= {f"gateway-{g.name}" for g in self.gateways}
        for setting in ("cores", "nice"):
            unknown = sorted(set(getattr(self.supervisor, setting)) - known)
            if unknown:
                raise ValueError(
                    f"supervisor.{setting} names {', '.join(map(repr, unknown))}, no process "
                    f"of this instance ({', '.join(sorted(known))})"
                )

    def _check_listeners(self) -> None:
        """No two listeners on one address (gateways that all set reuse_port may share)."""
        seen: dict[tuple[str, int], tuple[str, str, Face]] = {}  # address -> who, kind, face
        wildcard = {"0.0.0.0", "::"}  # every address ("" too: listen_address): any host

        def listen(host: str, port: int, who: str, shared: str = "", look: Face = ()) -> None:
            if refused := host_refused(host):  # review 263: "1::2::3" bound nowhere
                raise ValueError(f"{who}: host {cut_values(repr(host))} {refused}")
            if not port:
                return  # a free port, picked at start
            # LOCALHOST is localhost (review 134), 127.1 is 127.0.0.1 (review 142)
            host = listen_address(host)
            clashes = [
                (h, other)
                for (h, p), other in seen.items()
                if p == port and (h == host or h in wildcard or host in wildcard)
            ]
            for h, other in clashes:
                apart = h != host and not (h in wildcard and host in wildcard)  # (review 232)
                if shared and other[1] == shared:
                    if not apart:
                        check_alike(who, look, other[0], other[2])  # what clients meet
                    continue
                if shared.startswith("fix ") and other[1].startswith("fix "):
                    if apart:  # an address's own listener takes its clients, not a wildcard
                        continue
                    raise ValueError(  # the kernel hands a client's Logon to either (review 52)
                        f"{who} and {other[0]} share {host}:{port} with reuse_port but answer "
                        f"as comp_id {shared[4:]!r} and {other[1][4:]!r}: a client's Logon "
                        "lands on either, which refuses a TargetCompID not its own"
                    )
                raise ValueError(
                    f"{who} ({host}:{port}) and {other[0]} ({h}:{port}) both listen there"
                )
            seen[(host, port)] = (who, shared, look)

        for g in self.gateways:
            fix = f"fix {g.comp_id}" if g.reuse_port else ""
            listen(g.host, g.port, f"gateway {g.name} (FIX)", fix, face(g))
            if g.rest is not None:
                shared = "rest" if g.reuse_port else ""
                listen(g.rest.host, g.rest.port, f"gateway {g.name} (REST)", shared, face(g.rest))
        if self.marketdata.enabled:
            listen(self.marketdata.host, self.marketdata.port, "marketdata")
        sup, rep = self.supervisor, self.replication
        if sup.metrics:
            listen(sup.metrics_host, sup.metrics_port, "supervisor.metrics_port")
        listen(rep.listen_host, rep.listen_port, "replication.listen_port")

    def _check_assets(self) -> None:
        assets = {a.name: a for a in self.assets}
        for what, values in (
            ("asset name", [a.name for a in self.assets]),
            ("asset id", [str(a.id) for a in self.assets]),
        ):
            if dupes := sorted({v for v in values if values.count(v) > 1}):
                raise ValueError(f"{what} {', '.join(dupes)} is configured twice")
        for s in self.symbols:
            for role in ("base", "quote"):
                name = getattr(s, role)
                if name not in assets:
                    raise ValueError(
                        f"symbol {s.name!r}: {role} asset {name!r} is not in [[assets]] "
                        f"({', '.join(assets)})"
                    )
            if s.base == s.quote:
                raise ValueError(f"symbol {s.name!r}: base and quote are both {s.base!r}")
            quote, base = assets[s.quote], assets[s.base]
            if quote.decimals < s.price_decimals + s.qty_decimals:
                raise ValueError(
                    f"symbol {s.name!r}: quote {quote.name} has {quote.decimals} decimals, "
                    f"fewer than price_decimals + qty_decimals = "
                    f"{s.price_decimals + s.qty_decimals}: notionals would not be whole"
                )
            if base.decimals < s.qty_decimals:
                raise ValueError(
                    f"symbol {s.name!r}: base {base.name} has {base.decimals} decimals, "
                    f"fewer than qty_decimals = {s.qty_decimals}"
                )

    def asset(self, name: str) -> AssetConfig:
        for a in self.assets:
            if a.name == name:
                return a
        shown = cut_values(repr(name))  # a value of kilobytes shown cut (review 194)
        raise KeyError(f"asset {shown} is not configured ({[a.name for a in self.assets]})")

    def symbol(self, name: str) -> SymbolConfig:
        for s in self.symbols:
            if s.name == name:
                return s
        shown = cut_values(repr(name))
        raise KeyError(f"symbol {shown} is not configured ({[s.name for s in self.symbols]})")

    def matcher(self, name: str) -> MatcherConfig:
        for m in self.matchers:
            if m.name == name:
                return m
        raise KeyError(f"matcher {name!r} is not configured ({[m.name for m in self.matchers]})")
