"""The pipeline's ring names and data paths: one place, so every process agrees.

A ring's shared-memory name is ``/ringex.<instance>.<ring name>`` (``shm.region``); ring
names are 1..48 of ``[A-Za-z0-9_-]``. Matcher names are configured (``[[matchers]] name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from shm import Ring
from shm.codec import SlotCodec

if TYPE_CHECKING:
    from config.schema import RingexConfig

T = TypeVar("T")


def matcher_input(matcher: str) -> str:
    """Sequenced commands for one matcher: written by the router."""
    return f"{matcher}-in"


def matcher_output(matcher: str) -> str:
    """One matcher's events: read by the gateways, the router, market data, the db writer."""
    return f"{matcher}-out"


def gateway_commands(gateway: int) -> str:
    """One gateway's commands to the router: written by the gateway, read by the router."""
    return f"gw{gateway}-cmd"


def gateway_replies(gateway: int) -> str:
    """The router's replies to one gateway: rejects it decided, account command answers."""
    return f"gw{gateway}-rep"


def journal_dir(cfg: RingexConfig) -> Path:
    """The router's journal of sequenced commands (``procs.common.journal``)."""
    return Path(cfg.var_dir) / cfg.instance / "journal"


def journal_archive_dir(cfg: RingexConfig) -> Path:
    """Where ``ringex replay --archive`` moves the segments no reader needs any more
    (``journal.archive_dir``, by default beside the journal)."""
    if cfg.journal.archive_dir:  # a volume instances may share: one directory each
        return Path(cfg.journal.archive_dir) / cfg.instance
    return Path(cfg.var_dir) / cfg.instance / "journal-archive"


def snapshot_dir(cfg: RingexConfig, owner: str) -> Path:
    """Where ``owner`` ("exchange", "matcher-<name>") keeps its snapshots."""
    return Path(cfg.var_dir) / cfg.instance / "snapshots" / owner


#: Consumer names, as declared on the rings (one process attaches each).
ROUTER = "router"
MATCHER = "matcher"
MARKETDATA = "marketdata"


#: The gateway id of `ringex admin`: its commands (accounts, deposits, halts) take the
#: sequenced path like any gateway's, over the rings gw0-cmd and gw0-rep.
ADMIN_GATEWAY = 0

#: ``Heartbeat.source`` of the mark a matcher puts on its output ring once it has recovered:
#: ``counter`` is the newest command it has executed, so a starting router resends only what
#: comes after it (and the matcher, restarting, knows its events up to there are out).
RECOVERED_SOURCE = 1
#: ``Heartbeat.source`` of the mark a matcher puts on its output ring before it replays the
#: journal after its snapshot: ``counter`` is the snapshot's seq, so the events that follow are
#: of commands after it. A gateway reading a new ring learns from it what the ring cannot give
#: it again (``procs/gateway/recovery.py``).
REPLAY_SOURCE = 2
#: ``Heartbeat.source`` of the mark a starting router puts first on each gateway's reply ring
#: (``counter`` its journal's last seq): its balance watches are gone (none survive a restart),
#: so the gateway renews every watch at once and answers no balance it holds from before the
#: mark until the new router's snapshot comes (review 340: a deposit after a router restart
#: was missing from ``GET account`` until the 10 s renewal).
ROUTER_STARTED_SOURCE = 3


def symbol_rings(cfg: RingexConfig) -> dict[int, str]:
    """Each symbol's id -> the output ring of the matcher that owns it."""
    ids = {s.name: s.id for s in cfg.symbols}
    return {
        ids[name]: matcher_output(m.name) for m in cfg.matchers for name in m.symbols if name in ids
    }


def gateway_consumer(gateway: int) -> str:
    """The name a gateway reads matcher outputs and its replies ring under."""
    return f"gw{gateway}"


@dataclass(frozen=True)
class RingSpec:
    name: str
    writer: str  # the process that produces into it
    consumers: tuple[str, ...]
    capacity: int


def rings(cfg: RingexConfig) -> list[RingSpec]:
    """Every ring of an instance and who writes and reads it: all the wiring in one place.

    gateway N  --gwN-cmd-->  router  --<matcher>-in-->  matcher      (N = 0: `ringex admin`)
    router     --gwN-rep-->  gateway N
    matcher    --<matcher>-out-->  router, every gateway, marketdata
    (the database writer follows the journal, not a ring: it never holds the pipeline back)

    A declared consumer gates its ring's producer whether it runs or not, so a process that is
    off (``enabled = false``) has no consumer lines.
    """
    capacity = cfg.ring.capacity
    gateways = [ADMIN_GATEWAY, *(g.id for g in cfg.gateways)]
    specs = [RingSpec(gateway_commands(g), f"gateway {g}", (ROUTER,), capacity) for g in gateways]
    specs += [
        RingSpec(gateway_replies(g), ROUTER, (gateway_consumer(g),), capacity) for g in gateways
    ]
    readers = (ROUTER, *(gateway_consumer(g.id) for g in cfg.gateways))
    readers += (MARKETDATA,) if cfg.marketdata.enabled else ()
    for m in cfg.matchers:
        specs.append(RingSpec(matcher_input(m.name), ROUTER, (MATCHER,), capacity))
        specs.append(RingSpec(matcher_output(m.name), f"matcher {m.name}", readers, capacity))
    return specs


def gateway_root(cfg: RingexConfig) -> Path:
    """``var/<instance>/gateway``: the files an instance's gateways share (users, API keys),
    and a directory per gateway (``gateway_dir``)."""
    return Path(cfg.var_dir) / cfg.instance / "gateway"


def gateway_dir(cfg: RingexConfig, name: str) -> Path:
    """Gateway ``name``'s own files: its order log, ClOrdIDs, ExecID blocks, session stores."""
    return gateway_root(cfg) / name


def users_path(cfg: RingexConfig) -> Path:
    """The FIX users of an instance, shared by its gateways (``procs.common.users``)."""
    return gateway_root(cfg) / "users.json"


def claim_name(comp_id: str) -> str:
    """The file of a FIX session's claim in the gateways' ``logged-on`` directory
    (``procs/gateway/live_sessions.py``): any CompID makes a name."""
    return f"{comp_id.encode().hex()}.lock"


def session_claim(cfg: RingexConfig, comp_id: str) -> Path:
    """A FIX session's claim across the instance's gateways: locked while one serves it."""
    return gateway_root(cfg) / "logged-on" / claim_name(comp_id)


def apikeys_path(cfg: RingexConfig) -> Path:
    """The REST API keys of an instance, shared by its gateways (``procs.common.apikeys``)."""
    return gateway_root(cfg) / "apikeys.json"


def market_state_path(cfg: RingexConfig) -> Path:
    """The market data's saved state (``procs.common.market_snapshots``)."""
    return Path(cfg.var_dir) / cfg.instance / "marketdata" / "state.pickle"


def postgres_dir(cfg: RingexConfig) -> Path:
    """The embedded PostgreSQL cluster's home (``procs.common.embedded_postgres``)."""
    return Path(cfg.var_dir) / cfg.instance / "pg"


def create_rings(cfg: RingexConfig, codec: SlotCodec[T]) -> dict[str, Ring[T]]:
    """Create every ring of ``rings(cfg)`` with its declared consumers (the supervisor's job;
    tests that step the shells by hand do the same). On a failure the rings this call made
    are removed, and only those: one that existed (another start's) is not this call's."""
    made: dict[str, Ring[T]] = {}
    try:
        for spec in rings(cfg):
            made[spec.name] = Ring.create(
                cfg.instance,
                spec.name,
                codec,
                capacity=spec.capacity,
                consumers=list(spec.consumers),
                max_consumers=cfg.ring.max_consumers,
            )
    except BaseException:
        for ring in made.values():
            ring.unlink()
            ring.close()
        raise
    return made
