"""Review 305: a reread of session 69's operator-side changes.

Reviewed: ``git diff 1fd82ae HEAD`` of ``procs/admin/users.py`` (``remove_user``,
``_revoke_keys``, ``_keys_left``), ``procs/common/users.py`` (``UserStore.remove(session=)``),
``procs/common/apikeys.py`` (``revoke_user(session=)``), ``shm/ring.py`` (``info``: heartbeat
ages clamped at 0), ``procs/matcher/main.py`` (``_publish_mark``, ``MARKS``, ``_count``'s
shifted indices), ``procs/common/stats.py`` (``matcher_counters``), ``procs/supervisor/
metrics.py`` (``matcher_events`` less the page's ``marks``; ``_Quiet``'s request deadline),
``procs/router/applied.py`` (events settled less ``Heartbeat`` marks), README's changes; the
commit messages c15f7f2 and 1fe98b0, reviews 286 and 296's test files.

Rig: a real ``MatcherShell`` over real rings (``tests/unit/matcher/test_process.py``'s
``config``/``make_rings``/``order``) with a ``RingexCollector`` over its output ring, its
``collect()`` called in the interleavings forced (a producer stand-in that scrapes right
after the mark's publish; a ring stand-in whose ``info()`` lets the matcher idle before the
collector reads the page); ``remove_user`` run as a function on review 286's venue, the key
file's write made to fail once as review 251's full disk; ``MetricsServer`` over HTTP with
raw sockets and ``_Quiet.timeout`` made 1 s; ``AppliedEvents.settle`` on a bare instance
over a real ring.

Faults found (each fixed; its test says what it was):

1. ``ringex_matcher_events_total`` goes down between scrapes: a Prometheus counter reset,
   against ``procs/supervisor/metrics.py``'s docstring ("A counter never goes down while the
   supervisor runs"). The exported value is the ring's cursor less the page's ``marks``
   (``procs/supervisor/metrics.py:387-389``), two words written at two times by the matcher
   and read at two times by the collector: ``_publish_mark``
   (``procs/matcher/main.py:294-298``) publishes the mark, then counts it, so a scrape
   between them reads one event too many, and the next scrape one fewer; and the collector
   reads the cursor (``ring.info()``, ``metrics.py:381``) before the page, so a mark
   published and counted between those reads makes a scrape read one fewer than the one
   before. Prometheus reads the drop as a reset (``rate()`` adds the whole count). No
   ordering of the two reads or writes removes both windows. Fix: count the events on the
   page (an ``events`` word, ``+= len(events)`` where ``_publish`` publishes, stored with
   ``_count``) and export it alone; or keep the last exported value per matcher in the
   collector and export ``max(last, cursor - marks)`` (as ``carried.py`` does for pages).
   Fixed the first way: the page's word is ``events``, and the marks are not counted at all.
   ``test_a_scrape_between_a_marks_publish_and_its_count_reads_more_than_the_next`` and
   ``test_a_mark_made_between_the_cursors_read_and_the_pages_read_lowers_the_count``.
2. ``remove-user`` no longer revokes the keys an earlier removal left. Review 251's path:
   a removal whose key file could not be written says "its API keys were not revoked ...
   run it again once it can"; where the comp id was added again meanwhile, the rerun
   removes the new user (exit 0, "N API key(s) revoked") but revokes only the keys of the
   new user's session (``procs/admin/users.py:314`` passes ``user.session`` to
   ``revoke_user``, ``procs/common/apikeys.py:320-321`` filters on it): the first user's
   keys stay, listed under a comp id that is no user (``ringex admin keys list``), counted
   against the next user of that comp id's ``max_keys_per_user``, and nothing says so.
   Before session 69 ``revoke_user(comp_id)`` swept them. Fix: after the removal, revoke
   every key of the comp id but those of a user holding it now (``revoke_user(comp_id,
   keep=<session of UserStore.get(comp_id), if any>)``): the race of review 286 still spares
   the new user's keys, and leftovers go. Fixed so (``revoke_user(keep=...)``).
   ``test_remove_user_of_a_comp_id_added_again_revokes_the_earlier_users_leftover_keys``.
3. ``procs/supervisor/metrics.py:11-13`` (module docstring) still says "a matcher's events
   (acks, trades, rejects, book levels together) [are] its ``<m>-out`` ring's [records]";
   since 1fe98b0 they are its records less the matcher's marks (``ROLES``' HELP says so),
   and the same docstring's list of what the matchers count on their pages (``:20-22``)
   omits ``marks``. Fix: "its ``<m>-out`` ring's records less the matcher's marks (its page's
   ``marks``)", and name ``marks`` among the page's counters. Fixed: the docstring lists the
   matchers' events among the pages' counters, the ring's records but its marks.
   ``test_metrics_docstring_says_matcher_events_are_the_rings_records_less_marks``.

Sound (test_sound_*): the matcher's page after a restart over the same rings (kept:
``Counters.open``, same names): ``marks`` carries on and equals the ``Heartbeat`` records
in ``m1-out``, ``trades_<id>`` land on the right symbols (index 2 on, sorted ids as
``matcher_counters``) and the queue histogram's words after them, and the collector exports
ring records less marks (once idle) and ``ringex_trades_total``; ``Ring.info`` gives 0.0, not a
negative age, for a beat written after its clock read; ``AppliedEvents.settle`` counts reads
less their marks into ``time_use`` and still returns every record read (the router's loop
takes a mark as progress); ``_Quiet``: a request head dribbled in pieces inside the
deadline is answered even when the scrape takes longer than the deadline, one not whole by
then is closed, and 40 scrapes leave no timer threads behind; ``set-password
--revoke-keys`` still revokes every key of the comp id (``session`` not passed).

Leads not shown:

- A matcher killed between ``publish_batch([mark])`` and ``values[MARKS] += 1``
  (``procs/matcher/main.py:294-298``) leaves the mark uncounted for good: the events read
  one too many for the rest of the instance's run (the page outlives the process). The
  window is a few instructions; fault 1's first fix (count events, not marks) closes it too.
- The collector attaches a page once and keeps it (``metrics.py:221-232``): a page replaced
  under it (``Counters.open`` replaces one whose names differ: a matcher of this build over
  a page of an older build, a code update under a running supervisor, or a symbol added to
  a matcher's config and the matcher restarted) is read from the unlinked mapping for the
  supervisor's life: ``ringex_trades_total`` frozen, ``marks`` gone. A fresh start removes
  every segment first (``remove_instance``), so not after a stop and start.
- README "Metrics" still says each connection is "closed after 10 s without a request";
  since review 296 the bound is on the whole request head (line and headers).
"""

from __future__ import annotations

import argparse
import collections
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.admin.users import remove_user, set_password
from procs.common.apikeys import ApiKeyStore
from procs.common.record_codec import RecordCodec
from procs.common.records import Heartbeat, Record
from procs.common.stats import matcher_counters
from procs.common.topology import apikeys_path, users_path
from procs.common.types import Side
from procs.common.users import UserStore
from procs.core.engine import Matcher
from procs.core.symbols import symbol_specs
from procs.matcher.main import MatcherShell
from procs.router.applied import AppliedEvents
from procs.supervisor import metrics
from procs.supervisor.metrics import MetricsServer, RingexCollector
from procs.supervisor.scrape_handler import ScrapeHandler
from shm import Ring
from shm import header as h
from shm.ring import RingInfo
from tests.unit.gateway.test_review161_password_changes import FAST
from tests.unit.matcher.test_process import config, make_rings, order
from tests.unit.test_review254_diff import venue

CODEC = RecordCodec()


# -- rigs ---------------------------------------------------------------------------------------


def exported(collector: RingexCollector, family: str, **labels: str) -> float:
    """The sample ``<family>_total{labels}`` of one ``collect()``."""
    for fam in collector.collect():
        for s in fam.samples:
            if s.name == f"{family}_total" and s.labels == labels:
                return float(s.value)
    raise AssertionError(f"no {family}_total{labels}")


def records(ring: Ring[Record]) -> list[Record]:
    """Every record of ``ring`` from its first (a test's ring never laps)."""
    assert ring.cursor() <= ring.capacity
    return [CODEC.decode_from(ring.region.buf, ring.slot_offset(s)) for s in range(ring.cursor())]


def feed(shell: MatcherShell, inbound: Ring[Record], cmds: list[Record]) -> None:
    """``cmds`` into the matcher's input, taken in one step (no idle step after it)."""
    producer = inbound.producer()
    producer.publish_batch(cmds)
    producer.close()
    assert shell.step(timeout_s=0.5) == len(cmds)


class ScrapeAfterPublish:
    """The matcher's producer, scraping once right after a mark's publish returns (the
    matcher not yet past ``_publish_mark``'s publish)."""

    def __init__(self, real: Any, scrape: Callable[[], float]) -> None:
        self._real, self._scrape = real, scrape
        self.seen: list[float] = []

    def try_publish_batch(self, batch: list[Record]) -> bool:
        done = bool(self._real.try_publish_batch(batch))
        if done and any(isinstance(r, Heartbeat) for r in batch):
            self.seen.append(self._scrape())
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class IdleAfterInfo:
    """A ring whose ``info()`` (the collector's cursor read) lets the matcher take an idle
    step before it returns: a mark published and counted between the cursor's read and the
    page's."""

    def __init__(self, real: Ring[Record], idle: Callable[[], None]) -> None:
        self._real, self._idle = real, idle
        self.armed = False

    def info(self) -> RingInfo:
        got = self._real.info()
        if self.armed:
            self.armed = False
            self._idle()
        return got

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def matcher_rig(instance: str, tmp_path: Path) -> Iterator[tuple[RingexConfig, MatcherShell]]:
    cfg = config(instance, tmp_path, batch=64)
    inbound, outbound = make_rings(cfg)
    shell = MatcherShell(cfg, "m1")
    yield cfg, shell
    shell.close()
    inbound.close()
    outbound.close()


# -- fault 1: matcher events go down between scrapes -------------------------------------------


def test_a_scrape_between_a_marks_publish_and_its_count_reads_more_than_the_next(
    matcher_rig: tuple[RingexConfig, MatcherShell],
) -> None:
    """Scenario: a matcher takes one resting order (``Accepted``, ``BookLevel``); its next
    idle step publishes its "executed through" mark, and a scrape of ``/metrics`` lands
    after the mark's publish, before the matcher's next store; another scrape follows.
    Expected: ``ringex_matcher_events_total{matcher="m1"}`` never goes down (metrics.py's
    docstring: "A counter never goes down while the supervisor runs"; a drop is a reset to
    Prometheus). Was (fixed): the first scrape read 3 (the mark, published and not yet
    counted among the marks, taken for an event), the next 2."""
    cfg, shell = matcher_rig
    out = Ring.attach(cfg.instance, "m1-out", CODEC)
    inbound = Ring.attach(cfg.instance, "m1-in", CODEC)
    collector = RingexCollector(cfg, "test", {"m1-out": out}, lambda: [], lambda: "running")
    try:
        feed(shell, inbound, [order(1, 9, 1)])
        before = exported(collector, "ringex_matcher_events", matcher="m1")
        tap = ScrapeAfterPublish(
            shell.producer, lambda: exported(collector, "ringex_matcher_events", matcher="m1")
        )
        shell.producer = tap  # type: ignore[assignment]
        assert shell.step(timeout_s=0.01) == 0  # idle: the mark
        after = exported(collector, "ringex_matcher_events", matcher="m1")
        events = sum(not isinstance(r, Heartbeat) for r in records(out))
        assert (before, after, events) == (2, 2, 2)
        assert tap.seen and tap.seen[0] <= after, (
            f"scrapes read {before}, {tap.seen[0]}, then {after}: the counter went down"
        )
    finally:
        collector.close()
        if isinstance(shell.producer, ScrapeAfterPublish):  # the fixture closes the real one
            shell.producer = shell.producer._real
        inbound.close()
        out.close()


def test_a_mark_made_between_the_cursors_read_and_the_pages_read_lowers_the_count(
    matcher_rig: tuple[RingexConfig, MatcherShell],
) -> None:
    """Scenario: a matcher takes one resting order; a scrape reads 2 events; the next
    scrape reads ``m1-out``'s cursor, then the matcher's idle step publishes and counts its
    mark, then the scrape reads the page. Expected: ``ringex_matcher_events_total`` is not
    below the scrape before (no event was taken back). Was (fixed): it reads 1 (the ring's records
    before the mark, less the marks counting it)."""
    cfg, shell = matcher_rig
    out = Ring.attach(cfg.instance, "m1-out", CODEC)
    inbound = Ring.attach(cfg.instance, "m1-in", CODEC)
    ring = IdleAfterInfo(out, lambda: shell._mark(wait=False))
    rings: dict[str, Any] = {"m1-out": ring}  # the stand-in, read as the ring
    collector = RingexCollector(cfg, "test", rings, lambda: [], lambda: "running")
    try:
        feed(shell, inbound, [order(1, 9, 1)])
        before = exported(collector, "ringex_matcher_events", matcher="m1")
        ring.armed = True
        during = exported(collector, "ringex_matcher_events", matcher="m1")
        assert not ring.armed and isinstance(records(out)[-1], Heartbeat)  # the mark was made
        after = exported(collector, "ringex_matcher_events", matcher="m1")
        assert (before, after) == (2, 2)
        assert during >= before, f"scrapes read {before}, {during}, then {after}"
    finally:
        collector.close()
        inbound.close()
        out.close()


# -- fault 2: remove-user leaves an earlier removal's keys --------------------------------------


@pytest.fixture
def users_cfg(tmp_path: Path) -> RingexConfig:
    return venue(tmp_path, "c")


def test_remove_user_of_a_comp_id_added_again_revokes_the_earlier_users_leftover_keys(
    users_cfg: RingexConfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Scenario: ``remove-user ALICE`` (account 7, who made an API key) cannot write the key
    file (a full disk: "its API keys were not revoked ... run it again once it can", review
    251); ALICE is added again (account 8, a new session); the operator reruns
    ``remove-user ALICE``, which exits 0. Expected: ALICE is no user and no key of ALICE is
    left, as before session 69 (``revoke_user`` by comp id swept them). Was (fixed): the new ALICE
    is removed, "0 API key(s) revoked", and the first ALICE's key stays under a comp id that
    is no user."""
    cfg = users_cfg
    store = UserStore(users_path(cfg))
    first = store.add("ALICE", "pw", 7, n=FAST)
    leftover = ApiKeyStore(apikeys_path(cfg)).create(first, ["read"])
    args = argparse.Namespace(comp_id="ALICE", cancel_orders=False)
    real = ApiKeyStore.revoke_user

    def full_disk(self: ApiKeyStore, comp_id: str, *, keep: int | None = None) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ApiKeyStore, "revoke_user", full_disk)
    assert remove_user(cfg, args, lambda: None) == 1
    assert "were not revoked" in capsys.readouterr().err
    monkeypatch.setattr(ApiKeyStore, "revoke_user", real)
    UserStore(users_path(cfg)).add("ALICE", "pw2", 8, n=FAST)
    assert remove_user(cfg, args, lambda: None) == 0, capsys.readouterr().err
    said = capsys.readouterr().out
    assert UserStore(users_path(cfg)).get("ALICE") is None
    left = [k.key for k in ApiKeyStore(apikeys_path(cfg)).keys_of("ALICE")]
    assert left == [], f"said {said.strip()!r}; keys of ALICE left: {left} ({leftover.key})"


def test_sound_set_password_revoke_keys_still_sweeps_every_key_of_the_comp_id(
    users_cfg: RingexConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = users_cfg
    store = UserStore(users_path(cfg))
    first = store.add("BOB", "pw", 7, n=FAST)
    keys = ApiKeyStore(apikeys_path(cfg))
    stale = keys.create(first, ["read"])
    assert store.remove("BOB")
    second = store.add("BOB", "pw", 8, n=FAST)
    current = keys.create(second, ["read"])
    args = argparse.Namespace(comp_id="BOB", revoke_keys=True, password="new-pw-1")
    calls: list[int | None] = []
    real = ApiKeyStore.revoke_user

    def spy(self: ApiKeyStore, comp_id: str, *, keep: int | None = None) -> int:
        calls.append(keep)
        return real(self, comp_id, keep=keep)

    monkeypatch.setattr(ApiKeyStore, "revoke_user", spy)
    assert set_password(cfg, args) == 0
    assert calls == [None]  # every key of the comp id, the earlier user's too
    now = ApiKeyStore(apikeys_path(cfg))
    assert now.get(stale.key) is None and now.get(current.key) is None


# -- fault 3: the collector's docstring ---------------------------------------------------------


def test_metrics_docstring_says_matcher_events_are_the_rings_records_less_marks() -> None:
    """Scenario: the module docstring of ``procs/supervisor/metrics.py`` is read where it
    says what each number counts. Expected: a matcher's events are not its ``<m>-out``
    ring's records (which hold its marks too: ``ROLES``' HELP text and README say so), and
    the pages' list names them, its own count. Was (fixed): "a matcher's events (acks,
    trades, rejects, book levels together) its ``<m>-out`` ring's", and the pages' list named
    trades and the queue latency only."""
    doc = " ".join((metrics.__doc__ or "").split())
    rings = doc[: doc.index("What the rings cannot tell")]
    assert "a matcher's events" not in rings, rings
    said = doc[doc.index("each matcher's events") : doc.index("trades per symbol")]
    assert "marks" in said, said


# -- sound --------------------------------------------------------------------------------------


def test_sound_the_matchers_page_and_its_events_across_a_matcher_restart(
    instance: str, tmp_path: Path
) -> None:
    cfg = config(instance, tmp_path, batch=64)
    inbound, outbound = make_rings(cfg)
    shell = MatcherShell(cfg, "m1")
    sell = msgspec.structs.replace(order(1, 9, 1), side=Side.SELL)
    feed(shell, inbound, [sell, order(2, 9, 2)])  # a trade on symbol 9
    shell.step(timeout_s=0.01)  # idle: the mark
    shell.save_snapshot()  # (this rig has no journal: the restart restores from it)
    shell.close()
    again = MatcherShell(cfg, "m1")  # a restart over the same rings: the page is kept
    now = msgspec.structs.replace(order(3, 9, 3), ts_ns=time.time_ns())  # queued: counted
    feed(again, inbound, [now])
    again.step(timeout_s=0.01)
    names = matcher_counters(cfg, "m1")
    assert (names[0], *names[2:4]) == ("last_seq", "trades_3", "trades_9")  # [1]: the new word
    page = again.stats.read()
    recs = records(outbound)
    if "marks" in page:  # (this build's word; a count of events would do as well)
        assert page["marks"] == sum(isinstance(r, Heartbeat) for r in recs) >= 5
    assert (page["last_seq"], page["trades_3"], page["trades_9"]) == (3, 0, 1)
    assert page["queue_sum_ns"] == again.queue_latency.sum_ns > 0  # after the trades
    assert sum(v for k, v in page.items() if k.startswith("queue_le_")) == 1
    collector = RingexCollector(cfg, "t", {"m1-out": outbound}, lambda: [], lambda: "running")
    try:
        events = sum(not isinstance(r, Heartbeat) for r in recs)
        assert exported(collector, "ringex_matcher_events", matcher="m1") == events
        assert exported(collector, "ringex_trades", symbol="BBB") == 1
    finally:
        collector.close()
        again.close()
        inbound.close()
        outbound.close()


def test_sound_a_beat_after_infos_clock_read_is_of_age_zero(instance: str) -> None:
    ring = Ring.create(instance, "r", CODEC, capacity=64, consumers=["c"])
    try:
        ring.words[h.P_HEARTBEAT] = time.monotonic_ns() + 5_000_000_000  # "after" the read
        ring.words[h.consumer_word(0, h.C_HEARTBEAT)] = time.monotonic_ns() + 5_000_000_000
        info = ring.info()
        assert info.producer_heartbeat_age_s == 0.0
        assert info.consumers[0].heartbeat_age_s == 0.0
    finally:
        ring.close()


class _Settled:
    def __init__(self) -> None:
        self.events = 0

    def settled(self, events: int) -> None:
        self.events += events


def test_sound_router_settles_every_record_and_counts_events_less_marks(instance: str) -> None:
    ring = Ring.create(instance, "m1-out", CODEC, capacity=64, consumers=["router"])
    producer = ring.producer()
    consumer = ring.consumer("router", auto_commit=True)
    try:
        cfg = config(instance, Path("var"))
        made = Matcher(symbol_specs(cfg, "m1")).execute(order(1, 9, 1))
        producer.publish_batch([Heartbeat(1, 2, 0), *made, Heartbeat(2, 3, 1)])
        applied = AppliedEvents.__new__(AppliedEvents)
        seen: list[Record] = []
        applied.sequencer = SimpleNamespace(settle=seen.extend)  # type: ignore[assignment]
        applied.watches = None  # type: ignore[assignment]
        applied.from_matchers = [consumer]
        applied._outstanding = {"m1-out": collections.deque()}
        applied.applied_seq = 0
        applied.time_use = _Settled()  # type: ignore[assignment]
        assert applied.settle() == 2 + len(made)
        assert applied.time_use.events == len(made) == 2  # type: ignore[attr-defined]
        assert len(seen) == 4
    finally:
        consumer.close()
        producer.close()
        ring.close()


@pytest.fixture
def quick_server(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[MetricsServer, list[float]]]:
    """A ``MetricsServer`` whose request deadline is 1 s and whose scrape sleeps ``delay[0]``."""
    monkeypatch.setattr(ScrapeHandler, "timeout", 1.0)
    cfg = config(instance, tmp_path)
    out = Ring.create(instance, "m1-out", CODEC, capacity=64, consumers=["router"])
    collector = RingexCollector(cfg, "t", {"m1-out": out}, lambda: [], lambda: "running")
    delay = [0.0]
    real = collector.collect

    def slow() -> Any:
        time.sleep(delay[0])
        return real()

    monkeypatch.setattr(collector, "collect", slow)
    server = MetricsServer(collector, "127.0.0.1", 0)
    yield server, delay
    server.close()
    out.close()


def _answer(sock: socket.socket) -> bytes:
    got = b""
    while chunk := sock.recv(65536):
        got += chunk
    return got


def test_sound_a_head_in_pieces_inside_the_deadline_is_served_even_if_slow(
    quick_server: tuple[MetricsServer, list[float]],
) -> None:
    server, delay = quick_server
    delay[0] = 1.5  # the scrape takes longer than the deadline
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        for piece in (b"GET /metr", b"ics HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(0.2)
        got = _answer(s)
    assert got.startswith(b"HTTP/1.0 200") and b"ringex_matcher_events_total" in got, got[:200]
    delay[0] = 0.0
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        began = time.monotonic()
        s.sendall(b"GET /metrics HTTP/1.1\r\n")
        for _ in range(4):  # a header byte every 0.4 s: never whole by the deadline
            time.sleep(0.4)
            try:
                s.sendall(b"X")
            except OSError:
                break
        try:
            rest = _answer(s)
        except OSError:  # a reset is a close too
            rest = b""
        assert b"200" not in rest and time.monotonic() - began < 4


def test_sound_many_scrapes_leave_no_timer_threads(
    quick_server: tuple[MetricsServer, list[float]],
) -> None:
    server, _delay = quick_server
    url = f"http://127.0.0.1:{server.port}/metrics"
    urllib.request.urlopen(url, timeout=5).read()
    time.sleep(0.1)
    base = threading.active_count()
    for _ in range(40):
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
    deadline = time.monotonic() + 3
    while threading.active_count() > base and time.monotonic() < deadline:
        time.sleep(0.05)
    timers = [t for t in threading.enumerate() if t.name.startswith("Thread-")]
    assert threading.active_count() <= base and not timers, threading.enumerate()
