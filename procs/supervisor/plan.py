"""What an instance runs: one ``ProcessSpec`` per OS process, from the config. Pure.

Each process is ``python -m procs.<kind>.main --profile <file> [--name N]``, pinned to its
configured CPUs, and counts as ready once it holds its *ready ring*: the consumer line it
attaches after its recovery (the router's on the admin command ring, a matcher's on
its input ring, a gateway's on its replies ring, market data's on the first matcher output),
and listens on its *ready ports* (a gateway's FIX and REST ports, market data's; a port of 0
is any free one and is not waited on): a client told "running" is not refused.
The list's order is matchers, then the router, the replication source and the database writer,
then market data and gateways; the supervisor
starts the matchers first and the rest together once they are ready. Shutdown stops intake
first.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace

from config.schema import RingexConfig
from procs.common.stats import DBWRITER_PAGE
from procs.common.topology import (
    ADMIN_GATEWAY,
    MARKETDATA,
    MATCHER,
    ROUTER,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
    matcher_input,
    matcher_output,
)

MATCHER_MODULE = "procs.matcher.main"


@dataclass(frozen=True)
class ProcessSpec:
    name: str  # "router", "matcher-m1", "gateway-gw1", "marketdata"
    module: str
    args: tuple[str, ...]
    cpus: tuple[int, ...]
    ready_ring: str
    ready_consumer: str
    intake: bool = False  # takes orders from outside: stopped first
    stop_last: bool = False  # follows what the others write (the journal): stopped last
    nice: int = 0  # scheduling niceness it starts with (supervisor.nice)
    ready_ports: tuple[int, ...] = ()  # TCP ports it must listen on to be ready
    #: more (ring, consumer) lines it reads, watched for it being stuck as the ready one is
    watched: tuple[tuple[str, str], ...] = ()
    #: (page, counter) it sets to 1 once ready, for one that reads no ring (the dbwriter)
    ready_counter: tuple[str, str] | None = None

    def argv(self, profile: str) -> list[str]:
        return [sys.executable, "-m", self.module, "--profile", profile, *self.args]


def plan(cfg: RingexConfig) -> list[ProcessSpec]:
    cores = cfg.supervisor.cores

    def cpus(name: str) -> tuple[int, ...]:
        return tuple(cores.get(name, ()))

    nice = cfg.supervisor.nice
    if cfg.replication.primary:  # a standby runs no intake and no books until promoted
        standby = ProcessSpec(
            "standby", "procs.replica.main", ("standby",), cpus("standby"), "", ""
        )
        return [replace(standby, nice=nice.get("standby", 0))]  # review 104: nice too

    specs = [
        ProcessSpec(
            f"matcher-{m.name}",
            MATCHER_MODULE,
            ("--name", m.name),
            cpus(f"matcher-{m.name}"),
            matcher_input(m.name),
            MATCHER,
        )
        for m in cfg.matchers
    ]
    specs.append(
        ProcessSpec(
            "router",
            "procs.router.main",
            (),
            cpus("router"),
            gateway_commands(ADMIN_GATEWAY),  # it attaches the admin ring last
            ROUTER,
            # where the orders wait for it: a router frozen with them waiting is stuck
            watched=(
                *((gateway_commands(g.id), ROUTER) for g in cfg.gateways),
                *((matcher_output(m.name), ROUTER) for m in cfg.matchers),
            ),
        )
    )
    if cfg.replication.listen_port:  # serves the journal to a standby: no ring either
        specs.append(
            ProcessSpec(
                "replica-source", "procs.replica.main", ("source",), cpus("replica"), "", ""
            )
        )
    if cfg.database.enabled:  # follows the journal, no ring: ready once it reached PostgreSQL
        specs.append(  # (or found it away, or half ready_timeout_s passed): its tables made
            ProcessSpec(
                "dbwriter",
                "procs.dbwriter.main",
                (),
                cpus("dbwriter"),
                "",
                "",
                stop_last=True,
                ready_counter=(DBWRITER_PAGE, "ready"),
            )
        )
    if cfg.marketdata.enabled:
        specs.append(
            ProcessSpec(
                "marketdata",
                "procs.marketdata.main",
                (),
                cpus("marketdata"),
                matcher_output(cfg.matchers[0].name),
                MARKETDATA,
                ready_ports=_known((cfg.marketdata.port,)),
                # the other matchers' events it reads: one frozen there holds that matcher
                # back (review 218: only the first was watched)
                watched=tuple((matcher_output(m.name), MARKETDATA) for m in cfg.matchers[1:]),
            )
        )
    specs += [
        ProcessSpec(
            f"gateway-{g.name}",
            "procs.gateway.main",
            ("--name", g.name),
            cpus(f"gateway-{g.name}"),
            gateway_replies(g.id),
            gateway_consumer(g.id),
            intake=True,
            ready_ports=_known((g.port, g.rest.port if g.rest is not None else 0)),
            # every matcher's events it reads: a gateway frozen there holds the matcher back,
            # and with it every gateway's orders (review 218: the matcher was blamed)
            watched=tuple((matcher_output(m.name), gateway_consumer(g.id)) for m in cfg.matchers),
        )
        for g in cfg.gateways
    ]

    def config_name(spec: ProcessSpec) -> str:  # the key cores and nice know it by
        return "replica" if spec.name == "replica-source" else spec.name

    return [
        replace(spec, nice=nice[config_name(spec)]) if config_name(spec) in nice else spec
        for spec in specs
    ]


def _known(ports: tuple[int, ...]) -> tuple[int, ...]:
    """The ports to wait on: 0 asks the kernel for any free one, which cannot be known."""
    return tuple(port for port in ports if port)
