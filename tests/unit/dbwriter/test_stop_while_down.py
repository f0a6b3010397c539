"""A stop (SIGTERM) while PostgreSQL is unavailable ends the writer: it gives up waiting
rather than retry until the supervisor's kill, since the journal holds what it did not
write (the next start writes it)."""

from __future__ import annotations

import threading
from pathlib import Path

from procs.dbwriter.writer import Backoff, DbWriter, WriterOptions
from tests.free_ports import free_port
from tests.unit.dbwriter.journal_gen import build, make_cfg


def test_a_stop_while_postgresql_is_down_ends_the_writer(tmp_path: Path) -> None:
    cfg = make_cfg(tmp_path)
    build(cfg, 20)
    dsn = f"postgresql://ringex@127.0.0.1:{free_port()}/ringex"  # nobody listens
    waits: list[float] = []
    writer: DbWriter

    def sleep(s: float) -> None:
        waits.append(s)
        if len(waits) == 2:
            writer.request_stop()  # SIGTERM, while it backs off

    options = WriterOptions(backoff=Backoff(max_s=0.05))
    writer = DbWriter(cfg, dsn, options, sleep=sleep)
    done: list[int] = []
    thread = threading.Thread(target=lambda: done.append(writer.run()), daemon=True)
    thread.start()
    thread.join(10)
    writer.close()
    assert done == [0], f"still retrying after the stop ({len(waits)} waits)"
    assert len(waits) == 2
