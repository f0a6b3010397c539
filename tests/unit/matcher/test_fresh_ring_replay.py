"""A matcher's replay into a new output ring whose readers have not started (review 266).

A whole instance killed between snapshots restarts with new rings; the supervisor releases
a matcher's readers (router, gateways, market data) only once every matcher is ready, and a
matcher replays before it is. A replay of more events than the ring holds waited for ever
for readers that never came ("matcher-m1 did not attach 'm1-in' within 60 s"). It now
publishes its mark and the events of the newest commands that fit in the ring; the
mark's seq says where the ring's events begin, and readers make the earlier ones again from
the journal, as after a snapshot."""

from __future__ import annotations

import threading
from pathlib import Path

from procs.common.records import Heartbeat, Record
from procs.common.topology import RECOVERED_SOURCE, REPLAY_SOURCE, matcher_input, matcher_output
from procs.core.engine import Matcher
from procs.core.reference_book import ReferenceBook
from procs.core.symbols import symbol_specs
from procs.matcher.main import INPUT_CONSUMER, MatcherShell
from shm import Ring
from tests.unit.matcher.differential import SPEC, commands
from tests.unit.matcher.test_process import CODEC, config

CAPACITY = 1024


def test_a_replay_longer_than_a_new_ring_holds_does_not_wait_for_its_readers(
    instance: str, tmp_path: Path
) -> None:
    cfg = config(instance, tmp_path, batch=64)
    inbound = Ring.create(
        cfg.instance, matcher_input("m1"), CODEC, capacity=1024, consumers=[INPUT_CONSUMER]
    )
    outbound = Ring.create(
        cfg.instance, matcher_output("m1"), CODEC, capacity=CAPACITY, consumers=["tap"]
    )
    journal = list(commands(11, 3000, ReferenceBook(SPEC)))
    per_seq: dict[int, list[Record]] = {}
    reference = Matcher(symbol_specs(cfg, "m1"), ReferenceBook)
    for command in journal:
        per_seq[command.seq] = reference.execute(command)  # type: ignore[attr-defined]
    assert sum(map(len, per_seq.values())) > CAPACITY  # the replay cannot fit

    made: list[MatcherShell] = []
    start = threading.Thread(
        target=lambda: made.append(MatcherShell(cfg, "m1", replay=journal)), daemon=True
    )
    start.start()
    start.join(30)
    try:
        assert made, "the matcher waited for ever for readers of its new ring"
        got = outbound.consumer("tap").read(CAPACITY)
        first, *events, last = got
        assert isinstance(first, Heartbeat) and first.source == REPLAY_SOURCE
        assert isinstance(last, Heartbeat) and last.source == RECOVERED_SOURCE
        mark = first.counter
        assert 0 < mark < journal[-1].seq  # type: ignore[attr-defined]
        # from the mark on, every event once and in order; before it, none
        after = [e for seq, made_ in sorted(per_seq.items()) if seq > mark for e in made_]
        assert events == after
        assert len(events) <= CAPACITY - 2  # its two marks beside them
        assert made[0].matcher.state_hash() == reference.state_hash()
    finally:
        for shell in made:
            shell.close()
        inbound.close()
        outbound.close()
