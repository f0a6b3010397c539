"""The database writer process: ``python -m procs.dbwriter.main --profile <name or toml>``.

Only the edge: load the config, pick the database (``database.dsn``, or the embedded cluster
under ``var/<instance>/pg`` when it is empty), and run the writer until SIGTERM or SIGINT,
which finish the batch at hand, commit it with its checkpoint, and exit 0. ``--to-end``
replays the journal to its last entry and exits (what ``ringex replay --to-db`` runs).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from types import FrameType

from config import load_profile
from config.schema import RingexConfig
from procs.common import gc_policy, sd_notify
from procs.common.embedded_postgres import EmbeddedPostgres
from procs.common.stats import DBWRITER_COUNTERS, DBWRITER_PAGE
from procs.common.topology import postgres_dir, users_path
from procs.common.units import exit_if_other_units
from procs.dbwriter.writer import Backoff, DbWriter, StoppedWaitingError, WriterOptions
from shm.counters import Counters

log = logging.getLogger("ringex.dbwriter")

#: The page's counter the supervisor's start waits for (``DbWriter.ready``).
READY = DBWRITER_COUNTERS.index("ready")
#: How often at most the writer, retrying, looks whether its embedded cluster is down.
REVIVE_S = 2.0
#: How often a revive that waits on the cluster's start calls its ``pet``, and for how long
#: at most: ``pg_ctl``'s 60 s, its turn on the start's lock and its connect, with room.
PET_S = 1.0
PETTED_S = 180.0


def options(cfg: RingexConfig) -> WriterOptions:
    db = cfg.database
    return WriterOptions(
        batch_rows=db.batch_rows,
        batch_ms=db.batch_ms,
        snapshot_every=db.snapshot_every,
        snapshot_s=db.snapshot_s,
        backoff=Backoff(max_s=db.retry_max_s),
        users_path=users_path(cfg),
    )


def _nothing() -> None:
    """What ``sd_notify.petting`` wraps where only its ping is wanted."""


def _page(cfg: RingexConfig) -> tuple[Counters, Callable[[], None], threading.Timer]:
    """The writer's counter page, the call that sets its ``ready`` (0 until then: a
    restarted writer's page is its last run's), and a timer, started, that makes that call
    at half the supervisor's ``ready_timeout_s`` whatever else: the start is not held past
    it by a slow initdb or a long recovery of the cluster (the exchange trades meanwhile)."""
    page = Counters.open(cfg.instance, DBWRITER_PAGE, DBWRITER_COUNTERS)
    page.values[READY] = 0
    ready = _saying(page, READY)
    late = threading.Timer(cfg.supervisor.ready_timeout_s / 2, ready)
    late.daemon = True
    late.start()
    return page, ready, late


def _saying(page: Counters, index: int) -> Callable[[], None]:
    """A call that sets counter ``index`` of ``page`` to 1."""

    def say() -> None:
        page.values[index] = 1

    return say


def _reviving(
    embedded: EmbeddedPostgres, pet: Callable[[], None], every_s: float = REVIVE_S
) -> Callable[[], None]:
    """A call that starts ``embedded`` again where it is down, once ``every_s`` at most: no
    one else starts this private cluster, and one the OOM killer took stayed down, the
    history with it, until the writer was restarted by hand (review 261). ``pet`` is called
    each ``PET_S`` while it starts: a crash recovery may take ``pg_ctl``'s whole 60 s, past
    the unit's 30 s ``WatchdogSec``, and systemd killed the writer that revived it."""
    looked = [0.0]

    def revive() -> None:
        if time.monotonic() - looked[0] < every_s:
            return
        looked[0] = time.monotonic()
        try:
            if not embedded.running():
                log.warning("the embedded PostgreSQL at %s is down: starting it", embedded.data)
                with ThreadPoolExecutor(1, thread_name_prefix="revive") as pool:
                    started, until = pool.submit(embedded.start), time.monotonic() + PETTED_S
                    while not wait([started], timeout=PET_S).done:
                        if time.monotonic() < until:  # past it, a start that hangs (a lock
                            pet()  # file, a connect) is left to the watchdog (review 294)
                    started.result()
        except Exception as exc:  # its start, or its connect after (psycopg's): said, and
            log.error("the embedded PostgreSQL did not start: %s", exc)  # tried again later

    return revive


def _noting(
    sleep: Callable[[float], None], page: Counters, committed: Callable[[], int | None]
) -> Callable[[float], None]:
    """``sleep``, also writing the writer's checkpoint into ``page`` first: the writer's loop
    waits once a turn, and so does a retry while PostgreSQL is away (its lag then grows)."""
    values = page.values

    def noting(seconds: float) -> None:
        at = committed()
        if at is not None:
            values[0], values[1] = at, 1
        sleep(seconds)

    return noting


def _checkpoint(writer: DbWriter | None) -> int | None:
    """The writer's checkpoint once it has read it from the database (its ``follower`` is
    made after): None while it connects, retrying (review 223: 0 read as the whole journal
    behind, over the last run's true figure)."""
    return writer.committed if writer is not None and writer.follower is not None else None


def run(cfg: RingexConfig, *, to_end: bool = False, dsn: str | None = None) -> int:
    """Run the writer (``to_end``: once, to the journal's end); return the checkpoint."""
    # The handler goes in first: a stop that comes while the cluster starts must still end
    # with the journal written to its end, not with the default SIGTERM death.
    writer: DbWriter | None = None
    stopped = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopped
        log.info("signal %d: writing the journal to its end, then stopping", signum)
        sd_notify.stopping()
        stopped = True
        if writer is not None:
            writer.request_stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    embedded = None
    page: Counters | None = None
    late: threading.Timer | None = None
    ready: Callable[[], None] = _nothing
    try:
        if not to_end:  # its checkpoint, for the supervisor's metrics (its lag), and its ready
            page, ready, late = _page(cfg)
        if dsn is None:
            dsn = cfg.database.dsn
        if not dsn:
            embedded = EmbeddedPostgres(postgres_dir(cfg))
            dsn = embedded.start()
        # READY=1 once it first waits (caught up with the journal); its waits pet the watchdog
        sleep: Callable[[float], None] = sd_notify.petting(time.sleep, ready_first=True)
        if page is not None:
            sleep = _noting(sleep, page, lambda: _checkpoint(writer))
        pet = sd_notify.petting(_nothing)  # and so does each batch of a catch-up
        revive = _nothing if embedded is None else _reviving(embedded, pet)
        writer = DbWriter(cfg, dsn, options(cfg), sleep=sleep, pet=pet, ready=ready, revive=revive)
        gc_policy.settle(cfg.gc)
        if stopped:
            writer.request_stop()
        try:
            return writer.run(to_end=to_end)
        finally:
            writer.close()
    finally:
        if late is not None:
            late.cancel()
            late.join()
        if page is not None:
            page.close()
        try:  # under its stop handler still: a second SIGTERM (a parent-death signal comes
            if embedded is not None and embedded.started_here:  # once per thread of the
                embedded.stop()  # parent) killed it in the middle of pg_ctl stop
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ringex database writer")
    ap.add_argument("--profile", default="dev", help="profile name or path to a TOML file")
    ap.add_argument("--to-end", action="store_true", help="replay to the journal's end, exit")
    ap.add_argument("--dsn", default=None, help="override database.dsn")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_profile(args.profile)
    exit_if_other_units(cfg, "dbwriter")  # a unit restarted on an edited profile
    try:
        checkpoint = run(cfg, to_end=args.to_end, dsn=args.dsn)
    except StoppedWaitingError as exc:  # --to-end, stopped short of the end
        log.error("%s; the database did not reach the journal's end", exc)
        return 1
    log.info("dbwriter stopped at checkpoint %d", checkpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
