"""Review 8: the daily session end across a failover (``session_end.py``).

The end a supervisor last sent is remembered in a file on its own host, but what a standby
holds of its primary, and what a promotion inherits, is the journal. So a standby promoted
after its primary died just before the end must send that end, once; a standby promoted after
its primary journaled the end must not send it again, whatever its own host's file says (a
host that was the primary before it was demoted keeps its own, older, record); and a primary
whose supervisor died between sending the end and remembering it must not send it twice.

Rigs: ``Sends`` (the admin ring, counted) and ``utc`` of test_session_end and
test_session_clock, the standby's profile and its promotion (``promotion.py``) as in
test_promotion. The clock is each poll's argument: nothing sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from config.schema import RingexConfig
from procs.common.journal_format import EntryLayout
from procs.common.journal_writer import JournalWriter
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand, Record, Transfer
from procs.common.run_files import read_json
from procs.common.topology import journal_dir
from procs.common.types import AdminAction
from procs.supervisor import promotion, session_end
from procs.supervisor.session_end import SessionEnds, session_end_path
from tests.e2e.test_standby import profile
from tests.unit.supervisor.test_session_clock import S, utc
from tests.unit.supervisor.test_session_end import Sends

CODEC = RecordCodec()
#: Small segments: a day of the test's entries spans several, as a real day's do.
SEGMENT_BYTES = 64 + EntryLayout(CODEC.slot_size).size * 40  # header, 40 entries
SCHEDULE = '[supervisor]\nsession_end_utc = "17:00"\n'


class Host:
    """One host's instance: its profile (with the 17:00 schedule), its journal (what its
    router or, on a standby, its replica wrote) and its supervisors, each polled at the
    times given like ``Supervisor.watch`` does once a second."""

    def __init__(self, tmp_path: Path, instance: str, *, standby: bool) -> None:
        extra = '[replication]\nprimary = "127.0.0.1:1"\n' if standby else ""
        self.path = profile(
            tmp_path / f"{instance}.toml", instance, tmp_path / "var", extra + SCHEDULE
        )
        self.cfg = load_profile(str(self.path))
        self.seq = 0

    def journal(self, *entries: tuple[str, str]) -> None:
        """Entries sequenced at the given times: ("order", t) a command (a deposit stands
        for any), an END_OF_SESSION for every symbol ("end", t) or for symbol 1 ("end 1", t)."""
        records: list[Record] = []
        for kind, at in entries:
            self.seq += 1
            ts = utc(at)
            if kind == "order":
                records.append(Transfer(self.seq, ts, 1, 0, self.seq, 7, 1, 100, self.seq))
            else:
                symbol = 1 if kind == "end 1" else 0
                records.append(AdminCommand(self.seq, ts, AdminAction.END_OF_SESSION, symbol, ts))
        with JournalWriter(
            journal_dir(self.cfg),
            slot_size=CODEC.slot_size,
            schema_id=CODEC.journal_schema_id,
            segment_bytes=SEGMENT_BYTES,
        ) as writer:
            images = b"".join(map(CODEC.encode_slot, records))
            writer.append(writer.next_seq, images, len(records))

    def orders(self, first: str, last: str, every_s: int) -> None:
        """A command every ``every_s`` seconds from ``first`` to ``last``."""
        times = range(utc(first), utc(last) + 1, every_s * S)
        self.journal(*(("order", _text(t)) for t in times))

    def supervise(self, cfg: RingexConfig, *times: str) -> list[int | None]:
        """A supervisor of ``cfg`` started at the first time and polled at each."""
        return Watch(cfg).at(*times)

    def promote(self) -> RingexConfig:
        """What the standby's supervisor does on ``failover.py promote``: the promoted
        profile (the standby's without its primary), the new epoch in its journal."""
        promoted = load_profile(str(promotion.write_promoted_profile(str(self.path))))
        promotion.begin_epoch(promoted, 2)
        return promoted


class Watch:
    """One supervisor's schedule (``Supervisor.__init__`` makes it, ``watch`` polls it)."""

    def __init__(self, cfg: RingexConfig) -> None:
        self.ends = SessionEnds.of(cfg)

    def at(self, *times: str) -> list[int | None]:
        """What it sent at each time: the end's scheduled time, or None."""
        return [None if self.ends is None else self.ends.poll(utc(t)) for t in times]


def _text(ns: int) -> str:
    """``ns`` as ``utc`` reads it: "YYYY-MM-DD HH:MM:SS" (whole seconds)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ns // S))


@pytest.fixture
def sends(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sends]:
    """The admin ring of whichever instance sends, counted (``Sends`` of test_session_end)."""
    counted = Sends()
    monkeypatch.setattr(session_end, "send_end_of_session", lambda cfg: counted())
    yield counted


def _demoted_host(tmp_path: Path, instance: str, sends: Sends) -> Host:
    """A standby host that was the primary until 03-08: its supervisor then sent the 03-07
    end and remembers it in its own file; it has been its new primary's standby since."""
    host = Host(tmp_path, instance, standby=True)
    as_primary = load_profile(str(promotion.write_promoted_profile(str(host.path))))
    assert host.supervise(as_primary, "2026-03-07 12:00", "2026-03-07 17:00:01") == [
        None,
        utc("2026-03-07 17:00"),
    ]
    assert sends.count == 1
    sends.count = 0
    return host


# -- a promoted standby --------------------------------------------------------------------------


def test_a_standby_promoted_after_the_end_its_primary_straddled_sends_it_once(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The primary ends 03-09's session, then dies at 16:59:58 on 03-10; the standby is
    promoted at 17:00:30. The 03-10 end is due and no journal holds it: the promoted
    instance sends it at once, and never again (later polls, a restart of its supervisor)."""
    host = Host(tmp_path, instance, standby=True)
    standby = Watch(host.cfg)  # the standby's own supervisor, from 03-09 12:00
    host.orders("2026-03-09 12:00", "2026-03-09 16:59", 600)
    assert standby.at("2026-03-09 12:00", "2026-03-09 17:00:00") == [None, None]
    host.journal(("end", "2026-03-09 17:00:00"))  # the primary's, replicated
    host.orders("2026-03-09 17:10", "2026-03-10 16:59:58", 1800)
    assert standby.at("2026-03-09 17:00:01", "2026-03-10 16:59:59") == [None, None]
    assert sends.count == 0  # a standby sends none

    promoted = host.promote()
    polls = [f"2026-03-10 17:00:{s}" for s in range(30, 60)] + ["2026-03-10 23:00"]
    assert host.supervise(promoted, *polls) == [utc("2026-03-10 17:00"), *[None] * 30]
    host.journal(("end", "2026-03-10 17:00:31"))  # what the promoted router journaled
    assert host.supervise(promoted, "2026-03-10 17:05", "2026-03-11 09:00") == [None, None]
    assert sends.count == 1


def test_a_standby_promoted_after_its_primary_journaled_the_end_does_not_send_it_again(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The primary's 03-10 end reached the standby's journal at 17:00:00.3 and the primary
    died; the standby's supervisor had not looked since 17:00:00, and its host's own file
    (from when it was the primary) says 03-07. Promoted at 17:00:01, it sends nothing for
    03-10: the journal holds it. The next day's end it sends."""
    host = _demoted_host(tmp_path, instance, sends)
    host.orders("2026-03-09 09:00", "2026-03-10 16:59:50", 3600)
    assert host.supervise(host.cfg, "2026-03-09 09:00", "2026-03-10 17:00:00") == [None, None]
    host.journal(("end", "2026-03-10 17:00:00"), ("order", "2026-03-10 17:00:00"))

    promoted = host.promote()
    assert host.supervise(promoted, "2026-03-10 17:00:01", "2026-03-10 17:00:02") == [None, None]
    assert sends.count == 0
    assert host.supervise(promoted, "2026-03-11 16:59", "2026-03-11 17:00:01") == [
        None,
        utc("2026-03-11 17:00"),
    ]
    assert sends.count == 1


def test_a_standby_promoted_before_the_end_sends_only_that_days_end(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The primary journaled the 03-09 end (among a day of orders, a manual END_OF_SESSION
    for one symbol after it), then died at 03-10 16:50; the standby's supervisor never saw
    the 03-09 end (it was restarting) and its host's file says 03-07. Promoted at 16:52, it
    must not send the 03-09 end again (that would expire the DAY orders of 03-10): only the
    03-10 one, at 17:00, once."""
    host = _demoted_host(tmp_path, instance, sends)
    host.orders("2026-03-09 09:00", "2026-03-09 16:59", 900)
    host.journal(("end", "2026-03-09 17:00:01"), ("end 1", "2026-03-09 17:30"))
    host.orders("2026-03-09 18:00", "2026-03-10 16:50", 900)

    promoted = host.promote()
    assert host.supervise(
        promoted, "2026-03-10 16:52", "2026-03-10 16:59:59", "2026-03-10 17:00", "2026-03-10 17:01"
    ) == [None, None, utc("2026-03-10 17:00"), None]
    assert sends.count == 1


def test_a_standby_records_its_primarys_ends_from_the_journal_and_sends_none(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """A standby's supervisor keeps the record of the ends its primary sent, from the
    journal as each arrives (its first start: the end that passed), and sends none itself,
    not even when its primary's end is late."""
    host = Host(tmp_path, instance, standby=True)
    standby = Watch(host.cfg)
    host.orders("2026-03-10 12:00", "2026-03-10 16:59", 600)
    polls = ["2026-03-10 12:00", "2026-03-10 17:00", "2026-03-10 17:00:01", "2026-03-10 17:05"]
    assert standby.at(*polls) == [None] * 4
    record = read_json(session_end_path(host.cfg))
    assert record is not None and record.pop("crc32")  # (a check of end_ns: review 141)
    assert record == {
        "end_ns": utc("2026-03-09 17:00"), "end_utc": "2026-03-09T17:00Z",
        "written_ns": utc("2026-03-10 12:00"),
    }  # fmt: skip
    host.journal(("end", "2026-03-10 17:05:30"))  # late: its admin ring was busy
    assert standby.at("2026-03-10 17:06") == [None]
    assert sends.count == 0
    doc = read_json(session_end_path(host.cfg))
    assert doc is not None and doc["end_ns"] == utc("2026-03-10 17:00")


# -- a primary restarted ---------------------------------------------------------------------------


def test_a_primary_restarted_after_sending_the_end_but_before_remembering_it_does_not_resend(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Its supervisor sent the 03-10 end and the router journaled it; the supervisor died
    before its file said so. Restarted, it finds the end in the journal: not sent again."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-10 12:00")  # first start: from the next end
    remembered = session_end_path(host.cfg).read_bytes()
    assert host.supervise(host.cfg, "2026-03-10 17:00:00") == [utc("2026-03-10 17:00")]
    host.journal(("end", "2026-03-10 17:00:00"))
    session_end_path(host.cfg).write_bytes(remembered)  # the crash: the write never happened
    assert host.supervise(host.cfg, "2026-03-10 17:00:05", "2026-03-10 18:00") == [None, None]
    assert sends.count == 1


def test_a_primary_down_across_the_end_sends_it_once_when_back(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Kept as ``session_clock`` documents it: down from 16:00 to 17:20, the 03-10 end is
    sent once it runs again (an END_OF_SESSION for one symbol, or one before 17:00, is not
    that day's end), then not again."""
    host = Host(tmp_path, instance, standby=False)
    host.supervise(host.cfg, "2026-03-09 12:00")
    host.orders("2026-03-09 12:00", "2026-03-09 16:59", 600)
    assert host.supervise(host.cfg, "2026-03-09 17:00:01") == [utc("2026-03-09 17:00")]
    host.journal(("end", "2026-03-09 17:00:01"))
    sends.count = 0
    host.orders("2026-03-09 18:00", "2026-03-10 16:00", 1800)
    host.journal(("end", "2026-03-10 16:30"))  # by hand, before the end: not the day's
    host.journal(("end 1", "2026-03-10 17:20"))  # back, an operator ends one symbol at once
    back = ["2026-03-10 17:20:01", "2026-03-10 17:20:02", "2026-03-11 09:00"]
    assert host.supervise(host.cfg, *back) == [utc("2026-03-10 17:00"), None, None]
    assert sends.count == 1
