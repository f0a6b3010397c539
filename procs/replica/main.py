"""Replication processes.

    python -m procs.replica.main source  --profile primary.toml   (replication.listen_port)
    python -m procs.replica.main standby --profile standby.toml   (replication.primary)

The supervisor runs the source on a primary whose config has a listen port. A standby is
its own instance (its own var directory and segment prefix) running only this process until
it is promoted (``scripts/failover.py``). SIGTERM stops either cleanly (exit 0; a standby
writes snapshots of its hot state first); a standby that finds a gap or a different history
exits 2, saying which. Under systemd both are ``Type=notify`` units: READY=1 once the source
listens, or once the standby has recovered its own state (it then follows, or waits for, the
primary), STOPPING=1 at a stop, and the watchdog while the event loop turns.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import uvloop

from config import load_profile
from config.schema import RingexConfig
from procs.common import gc_policy, sd_notify
from procs.common.exit_codes import REFUSED
from procs.replica.source import ReplicationSource
from procs.replica.standby import Standby, StandbyRefusedError

#: How long a stopping standby waits for its follow task to end before it closes.
STOP_WAIT_S = 5.0

log = logging.getLogger("ringex.replica")


async def _run(role: str, profile: str) -> int:
    cfg = load_profile(profile)
    watchdog = asyncio.create_task(sd_notify.watchdog_loop())
    try:
        return await (_source(cfg) if role == "source" else _standby(cfg))
    finally:
        watchdog.cancel()


def _stop_on_signals(stopping: asyncio.Event) -> None:
    def stop() -> None:
        sd_notify.stopping()
        stopping.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)


async def _source(cfg: RingexConfig) -> int:
    source = ReplicationSource(cfg)
    gc_policy.settle(cfg.gc)
    _stop_on_signals(source.stopping)
    try:
        await source.run()  # sends READY=1 once it listens
    finally:
        source.close()
    return 0


async def _standby(cfg: RingexConfig) -> int:
    try:
        standby = Standby(cfg)
    except StandbyRefusedError as exc:
        log.error("%s", exc)
        return REFUSED
    gc_policy.settle(cfg.gc)  # recovered: the state it follows with is never walked again
    _stop_on_signals(standby.stopping)
    task = asyncio.create_task(standby.run())
    sd_notify.ready()  # recovered: it follows the primary, or waits for it
    stop = asyncio.create_task(standby.stopping.wait())
    try:
        done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            task.result()  # raises StandbyRefusedError
        task.cancel()  # and ended before the close below (review 166: a frame in flight
        await asyncio.wait({task}, timeout=STOP_WAIT_S)  # was applied after it)
        return 0
    except StandbyRefusedError as exc:
        log.error("%s", exc)
        return REFUSED
    finally:
        stop.cancel()
        standby.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="ringex replication")
    parser.add_argument("role", choices=["source", "standby"])
    parser.add_argument("--profile", default="dev", help="profile name or TOML path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return uvloop.run(_run(args.role, args.profile))


if __name__ == "__main__":
    sys.exit(main())
