"""The router in sync mode over real rings and a real journal, this test playing the
replication source (it writes the acknowledged seq). Outcomes:
- before the acknowledgement a batch is journaled, but no matcher has it and no reply left;
- after it, both;
- a stop while waiting leaves the batch journaled and unpublished, its gateway ring
  uncommitted (read again, not sequenced again: ``Reread``); the restarted router publishes
  it once acknowledged, never sequencing it twice;
- a fenced router takes no command, and a fenced journal is not opened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import ReplicationConfig
from procs.common.epochs import FILE, Epochs, JournalFencedError
from procs.common.journal import JournalReader
from procs.common.records import AccountReply, NewOrder, Record
from procs.common.replication_ack import FENCED, AckBlock, ack_dir
from procs.common.topology import journal_dir, matcher_input
from procs.common.types import Side
from procs.router.main import RouterShell
from shm import Ring
from tests.unit.router.test_router import ADMIN, CODEC, Exchange, config, fund, order


@pytest.fixture
def exchange(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    cfg = config(instance, tmp_path)
    cfg = msgspec.structs.replace(
        cfg, replication=ReplicationConfig(listen_port=1, mode="sync", sync_timeout_ms=0)
    )
    source = AckBlock(ack_dir(cfg.var_dir, cfg.instance))
    source.acknowledged(10**9)  # funding goes through at once
    ex = Exchange(cfg)
    ex.source = source  # type: ignore[attr-defined]
    yield ex
    ex.stop()
    source.close()


def journaled(ex: Exchange) -> list[Record]:
    reader = JournalReader(
        journal_dir(ex.cfg), slot_size=CODEC.slot_size, schema_id=CODEC.journal_schema_id
    )
    return [CODEC.decode_slot(image) for _seq, image in reader.entries(1)]


def in_matcher_ring(ex: Exchange) -> int:
    newest = Ring.attach(ex.cfg.instance, matcher_input("m1"), CODEC).last_published()
    return int(getattr(newest, "seq", 0)) if newest is not None else 0


def funded(ex: Exchange) -> tuple[AckBlock, int]:
    """Account 7 funded (its replies read): the test's source and the journal's length."""
    fund(ex, 7, usd=10**6, btc=10**6)
    ex.replies_of(ADMIN)
    return ex.source, len(journaled(ex))  # type: ignore[attr-defined]


def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_nothing_leaves_before_the_standby_acknowledges(exchange: Exchange) -> None:
    source: AckBlock = exchange.source  # type: ignore[attr-defined]
    fund(exchange, 7, usd=10**6, btc=10**6)
    assert len(exchange.replies_of(ADMIN)) == 3  # the funding's, on the admin ring
    last = len(journaled(exchange))
    source.acknowledged(last)  # the standby has everything so far

    exchange.gateways[1].publish_batch([order(1, 7, Side.SELL, 1000, 10)])
    stepping = threading.Thread(target=exchange.router.step, kwargs={"timeout_s": 0.001})
    stepping.start()
    until(lambda: len(journaled(exchange)) == last + 1)  # journaled: waiting for the ack
    time.sleep(0.1)
    assert stepping.is_alive()
    assert in_matcher_ring(exchange) < last + 1  # no matcher has it, so no report can leave
    source.acknowledged(last + 1)
    stepping.join(10)
    assert not stepping.is_alive()
    assert in_matcher_ring(exchange) == last + 1
    gate = exchange.router.gate
    assert gate is not None and not gate.degraded


def test_a_stop_while_waiting_leaves_the_batch_journaled_for_the_restart(
    exchange: Exchange,
) -> None:
    source, last = funded(exchange)
    source.acknowledged(last)
    stop = threading.Event()
    exchange.router._stop = stop.is_set
    exchange.gateways[1].publish_batch([order(2, 7, Side.SELL, 1000, 10)])
    stepping = threading.Thread(target=exchange.router.step, kwargs={"timeout_s": 0.001})
    stepping.start()
    until(lambda: len(journaled(exchange)) == last + 1)
    stop.set()  # SIGTERM while the batch waits for the standby
    stepping.join(10)
    assert not stepping.is_alive()
    assert in_matcher_ring(exchange) < last + 1 and not exchange.replies_of(1)

    exchange.stop()
    exchange.start()  # recovery: the batch is journaled, unpublished, its ring uncommitted
    stepping = threading.Thread(target=exchange.router.step, kwargs={"timeout_s": 0.001})
    stepping.start()  # its first step publishes the batch, once acknowledged
    time.sleep(0.1)
    assert stepping.is_alive() and in_matcher_ring(exchange) < last + 1
    source.acknowledged(last + 1)
    stepping.join(10)
    assert not stepping.is_alive()
    exchange.pump()
    entries = journaled(exchange)
    assert len(entries) == last + 1  # not sequenced twice
    assert isinstance(entries[-1], NewOrder)
    assert in_matcher_ring(exchange) == last + 1
    assert not [r for r in exchange.replies_of(1) if not isinstance(r, AccountReply)]


def test_a_fenced_router_sequences_nothing_and_a_fenced_journal_is_not_opened(
    exchange: Exchange,
) -> None:
    source, last = funded(exchange)
    source.words[FENCED] = 2  # the source met a standby of epoch 2
    exchange.gateways[1].publish_batch([order(3, 7, Side.SELL, 1000, 10)])
    assert exchange.router.step(timeout_s=0.001) == 0
    assert len(journaled(exchange)) == last and exchange.router.fenced
    assert in_matcher_ring(exchange) <= last and not exchange.replies_of(1)

    exchange.stop()
    directory = journal_dir(exchange.cfg)
    Epochs().fenced(2, "the promoted one").save(directory)
    with pytest.raises(JournalFencedError, match="'the promoted one' was promoted to epoch 2"):
        RouterShell(exchange.cfg)  # whoever restarts it
    (directory / FILE).unlink()  # what only a demote does
    exchange.start()
