"""Review 269: a hostile reread of the session's latest commits (``git diff e937dde HEAD --
procs config shm``), past what review 265's file pins.

Reviewed: ``procs/matcher/main.py`` (``_replay_fitting`` on a new ring: the mark of a
trimmed replay, a replay with no events, one command whose events alone exceed the ring's
room; ``published_position`` on a ring holding only that mark), ``procs/gateway/restart.py``
(``_after_new_rings``) with ``recovery.missed_events`` (read, not run: the gap between the
handled seq and the mark is made again from the journal), ``procs/dbwriter/main.py``
(``_page``: its timer is cancelled and joined before the page closes; ``to_end`` opens no
page), ``config/fields.py`` (``host_refused``, ``listen_address``'s trailing dot),
``procs/marketdata/outbox.py`` (``discard_all``) with ``server.py``'s UNSUBSCRIBE,
``procs/gateway/private_stream.py`` (``_admit``: synchronous from ``check`` to
``remember``, so two upgrades with one URL cannot both pass), ``procs/common/
pending_runs.py`` (``instances_run_by``: review 265 pins it). Rigs: review 266's matcher
rig (``tests/unit/matcher/test_process.py``'s config and codec, rings made per test);
``load_profile`` on TOML files written per test; an ``Outbox`` driven directly.

Faults found (fixed; its test says what it was):

1. ``config/fields.py:30`` (``_NAME`` now ends in ``\\.?``) with ``:43-46`` (``host_refused``:
   a colon-less host is taken where ``_NAME`` matches it) and ``:65`` (``listen_address``
   strips the dot): a listen host ``"127.0.0.1."`` (or ``"10.0.0.5."``) loads, and the clash
   check takes it as 127.0.0.1, but the listener binds the host as written, which is no IP
   literal to ``getaddrinfo`` (``inet_aton`` refuses the dot) and so a DNS name that resolves
   nowhere: the start fails with "Name or service not known", which review 142 made the
   config refuse up front (README: a listen host that is not "", an IP literal or a host name
   is refused at load). Before this change the dot was refused. Fix: in ``host_refused``,
   refuse a name whose last label is all digits ("is an IPv4 address with a trailing dot:
   write 127.0.0.1"; RFC 3696 §2: no top-level label is all-numeric), or bind
   ``listen_address(host)`` where it is an IP literal.

Found sound (plain tests): "localhost" and "localhost." on one port are refused as one
address; a new ring's replay of one command whose events are more than the ring's room
finishes (no wait for readers), its mark that command's seq and no batch over the ring; a
replay with no events marks the snapshot's seq; ``published_position`` on a new ring that
holds only a trimmed replay's mark is that mark's seq; ``discard_all`` forgets an owed
snapshot of an unsubscribed depth stream and keeps what other streams are owed; a name the
client never held discards nothing.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import msgspec

from procs.common.records import Heartbeat, NewOrder, Record
from procs.common.topology import RECOVERED_SOURCE, REPLAY_SOURCE, matcher_input, matcher_output
from procs.common.types import Side
from procs.core.engine import Matcher
from procs.core.symbols import symbol_specs
from procs.marketdata.outbox import Outbox
from procs.marketdata.streams import Kind
from procs.matcher.main import INPUT_CONSUMER, MatcherShell, published_position
from shm import Ring
from tests.unit.matcher.differential import SPEC
from tests.unit.matcher.test_process import CODEC, config, order
from tests.unit.test_review265_diff import _load

# -- config: hosts with the root's dot ---------------------------------------------------------


def _gateways(*hosts: str, port: int) -> str:
    return "\n".join(
        f'[[gateways]]\nname = "gw{k}"\nid = {k}\ncomp_id = "GW{k}"\nhost = "{host}"\nport = {port}'
        for k, host in enumerate(hosts, start=1)
    )


async def _bind(host: str) -> str:
    """ "" where a listener binds ``host`` as the gateway's does (``server.py:420``), else
    the error it meets."""
    loop = asyncio.get_running_loop()
    try:
        server = await loop.create_server(asyncio.Protocol, host, 0)
    except OSError as exc:
        return str(exc)
    server.close()
    await server.wait_closed()
    return ""


def test_an_ip_address_with_the_roots_dot_is_refused_or_binds(tmp_path: Path) -> None:
    """Scenario: a gateway's ``host = "127.0.0.1."`` (an operator's absolute spelling, the dot
    this change now takes for names); the config loads, then the gateway's listener binds
    that host as written. Expected: the config refuses it naming the address to write, or
    the listener binds 127.0.0.1 (the clash check already takes it as that). Was (fixed): it loads,
    and the bind fails ("Name or service not known"): the start fails, a fault review 142
    had the config catch at load."""
    refused = _load(tmp_path, 'instance = "r269dot"\n' + _gateways("127.0.0.1.", port=0))
    if refused:
        return
    assert asyncio.run(_bind("127.0.0.1.")) == ""


def test_localhost_and_localhost_dot_on_one_port_are_one_address(tmp_path: Path) -> None:
    """Scenario: two gateways on port 9871, one at "localhost", one at "localhost.".
    Expected: refused as both listening there. Now: so."""
    refused = _load(
        tmp_path, 'instance = "r269lh"\n' + _gateways("localhost", "localhost.", port=9871)
    )
    assert "both listen there" in refused


# -- the matcher's replay into a new ring ------------------------------------------------------

CAPACITY = 16


def _sells(first_seq: int, count: int) -> list[Record]:
    """``count`` resting sells of one lot each at 100, of account 2."""
    return [
        _with(order(seq, SPEC.symbol, seq), side=Side.SELL, account=2, owner=2)
        for seq in range(first_seq, first_seq + count)
    ]


def _with(base: NewOrder, *, side: Side, account: int, owner: int, qty: int = 1) -> NewOrder:
    return msgspec.structs.replace(base, side=side, account=account, session=owner, qty=qty)


def _shell(cfg: object, journal: list[Record]) -> list[MatcherShell]:
    made: list[MatcherShell] = []
    start = threading.Thread(
        target=lambda: made.append(MatcherShell(cfg, "m1", replay=journal)),  # type: ignore[arg-type]
        daemon=True,
    )
    start.start()
    start.join(30)
    assert made, "the matcher waited for readers of its new ring that come after it is ready"
    return made


def _rings(cfg: object) -> tuple[Ring[Record], Ring[Record]]:
    instance = cfg.instance  # type: ignore[attr-defined]
    inbound = Ring.create(
        instance, matcher_input("m1"), CODEC, capacity=1024, consumers=[INPUT_CONSUMER]
    )
    outbound = Ring.create(
        instance, matcher_output("m1"), CODEC, capacity=CAPACITY, consumers=["tap"]
    )
    return inbound, outbound


def test_one_command_with_more_events_than_the_new_ring_holds_is_left_out_whole(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: a new output ring of 16 slots; the journal holds 20 resting sells, then one
    buy of 20 lots that fills them all (its events alone are more than the ring's room of
    14). Expected: the start finishes (no wait for readers not yet released), the ring
    holds the mark at the buy's seq and the recovered mark, no batch larger than the ring
    was published, and the matcher's state is the journal's. Now: so."""
    cfg = config(instance, tmp_path, batch=64)
    journal = _sells(1, 20)
    buy = order(21, SPEC.symbol, 21)
    journal.append(_with(buy, side=Side.BUY, account=1, owner=1, qty=20))
    reference = Matcher(symbol_specs(cfg, "m1"))
    made_by = [reference.execute(c) for c in journal]
    assert len(made_by[-1]) > CAPACITY  # the buy's events alone overfill the ring
    inbound, outbound = _rings(cfg)
    made: list[MatcherShell] = []
    try:
        made = _shell(cfg, journal)
        got = outbound.consumer("tap").read(CAPACITY)
        assert len(got) == 2, got
        first, last = got
        assert isinstance(first, Heartbeat) and first.source == REPLAY_SOURCE
        assert first.counter == 21
        assert isinstance(last, Heartbeat) and last.source == RECOVERED_SOURCE
        assert last.counter == 21
        assert made[0].matcher.state_hash() == reference.state_hash()
    finally:
        for shell in made:
            shell.close()
        inbound.close()
        outbound.close()


def test_a_replay_with_no_events_marks_where_the_matcher_starts(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: a new ring, an empty journal. Expected: the ring holds the replay's mark
    and the recovered mark, both at seq 0. Now: so."""
    cfg = config(instance, tmp_path)
    inbound, outbound = _rings(cfg)
    made: list[MatcherShell] = []
    try:
        made = _shell(cfg, [])
        got = outbound.consumer("tap").read(CAPACITY)
        assert [(type(r), r.source, r.counter) for r in got] == [  # type: ignore[attr-defined]
            (Heartbeat, REPLAY_SOURCE, 0),
            (Heartbeat, RECOVERED_SOURCE, 0),
        ]
    finally:
        for shell in made:
            shell.close()
        inbound.close()
        outbound.close()


def test_a_new_ring_holding_only_a_trimmed_mark_is_published_through_it(instance: str) -> None:
    """Scenario: a start on new rings killed right after its trimmed replay published its
    mark (seq 57: the events of seqs up to it left out). Expected: ``published_position`` is
    (57, None): the ring's readers catch up from the mark. Now: so."""
    ring = Ring.create(instance, matcher_output("m1"), CODEC, capacity=CAPACITY, consumers=["tap"])
    try:
        producer = ring.producer()
        producer.publish_batch([Heartbeat(1, REPLAY_SOURCE, 57)])
        assert published_position(ring) == (57, None)
        producer.close()
    finally:
        ring.close()


# -- the market data's UNSUBSCRIBE ------------------------------------------------------------


def _outbox() -> Outbox:
    return Outbox(2, lambda stream: f"snapshot {stream}".encode())


def test_unsubscribing_a_depth_stream_forgets_its_owed_snapshot_only() -> None:
    """Scenario: a slow client's two depth streams each owe a snapshot (their diffs overflowed
    the limit), and a trade is queued; it unsubscribes one depth stream. Expected: the
    other stream's snapshot and the trade still go out; nothing of the unsubscribed one.
    Now: so."""
    box = _outbox()
    assert box.push(Kind.TRADE, "aaa@trade", b"t1") is None
    for n in range(3):
        box.push(Kind.DEPTH, "aaa@depth", f"a{n}".encode())
        box.push(Kind.DEPTH, "bbb@depth", f"b{n}".encode())
    box.discard_all({"aaa@depth"})
    box.settle()
    out = []
    while (payload := box.pop()) is not None:
        out.append(payload)
    assert not any(b"aaa@depth" in p or p.startswith(b"a") for p in out), out
    assert b"t1" in out
    assert any(b"bbb@depth" in p or p.startswith(b"b") for p in out), out


def test_unsubscribing_a_name_never_held_discards_nothing() -> None:
    """Scenario: a client's queue holds a trade and a ticker; it unsubscribes nothing it
    holds (the server passes the empty intersection). Expected: both still go out. Now:
    so."""
    box = _outbox()
    box.push(Kind.TRADE, "aaa@trade", b"t1")
    box.push(Kind.TICKER, "aaa@ticker", b"k1")
    box.discard_all(set())
    box.discard_all({"zzz@trade"})
    assert [box.pop(), box.pop(), box.pop()] == [b"t1", b"k1", None]
