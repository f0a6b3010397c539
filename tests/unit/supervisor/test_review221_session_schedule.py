"""Review 221: the trading day's schedule, attacked (``session_clock.py``, ``session_end.py``,
``journaled_ends.py``): an end sent into the admin ring that the instance's stop discarded
before the router journaled it, an NTP step back of seconds around an end that a promoted
standby then looks for in the journal, a supervisor restarted at the very instant of an end,
downtime across two ends with an operator's end between, the held promotion's schedule
made long before it runs, and the config's refusals naming the file.

Rigs (by import, nothing repeated): ``Host``, ``Watch`` and the ``sends`` fixture of
test_review8_session_end_failover (a profile with the 17:00 schedule, its journal, its
supervisors polled at given times, the admin ring counted); ``utc`` of test_session_clock;
``Sends`` of test_session_end. The clock is each poll's argument: nothing sleeps and no
process starts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from config import load_profile
from config.loader import ConfigError
from procs.common.run_files import read_json
from procs.supervisor import promotion
from procs.supervisor.session_end import SessionEnds, session_end_path
from tests.unit.supervisor.test_review8_session_end_failover import Host, Watch, sends
from tests.unit.supervisor.test_session_clock import S, utc
from tests.unit.supervisor.test_session_end import Sends

__all__ = ["sends"]  # review 8's fixture (the admin ring, counted), used by name


# -- the config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["25:00", "17:00 Europe/London", "Mars/Olympus", "17:00Z", "17:00+01:00", "-1:00", "\t"],
)
def test_an_end_time_that_is_no_utc_hh_mm_is_refused_naming_key_value_and_file(
    tmp_path: Path, value: str
) -> None:
    """A time past 23:59, one with a time zone (there is none to give: the schedule is UTC,
    so no daylight-saving day has a wall time that is missing or occurs twice) or one that
    is not a time at all is refused at load, naming the key, the value and the file."""
    path = tmp_path / "zone.toml"
    path.write_text(f'var_dir = "{tmp_path}"\n[supervisor]\nsession_end_utc = "{value}"\n')
    with pytest.raises(ConfigError) as refused:
        load_profile(str(path))
    message = str(refused.value)
    assert f"supervisor.session_end_utc {value!r}" in message, message
    assert str(path) in message, message


def test_an_empty_end_time_is_no_schedule(tmp_path: Path) -> None:
    path = tmp_path / "off.toml"
    path.write_text(f'var_dir = "{tmp_path}"\n[supervisor]\nsession_end_utc = ""\n')
    cfg = load_profile(str(path))
    assert cfg.supervisor.session_end_minute() is None
    assert SessionEnds.of(cfg) is None


# -- restarts and downtime ----------------------------------------------------------------------


def test_a_supervisor_restarted_at_the_very_instant_of_the_end_sends_it_once(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The supervisor stops at 16:59:59.999 and its successor's first poll is at 17:00:00.000
    exactly: the end has come (an end at the instant has), is sent, and is not sent again by
    a third supervisor started in the same nanosecond, nor by the clock stepping back over
    it by a millisecond."""
    host = Host(tmp_path, instance, standby=False)
    assert host.supervise(host.cfg, "2026-03-10 12:00", "2026-03-10 16:59:59") == [None, None]
    first = Watch(host.cfg)
    assert first.ends is not None
    assert first.ends.poll(utc("2026-03-10 17:00") - 1_000_000) is None
    successor = Watch(host.cfg)
    assert successor.ends is not None
    assert successor.ends.poll(utc("2026-03-10 17:00")) == utc("2026-03-10 17:00")
    host.journal(("end", "2026-03-10 17:00:00"))
    third = Watch(host.cfg)
    assert third.ends is not None
    assert third.ends.poll(utc("2026-03-10 17:00")) is None
    assert third.ends.poll(utc("2026-03-10 17:00") - 1_000_000) is None
    assert third.ends.poll(utc("2026-03-10 17:00")) is None
    assert sends.count == 1


def test_down_across_two_ends_with_an_operators_end_between_sends_only_the_latest(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The supervisor sent 03-09's end, then was down from 03-10 12:00 to 03-12 12:00 (two
    ends missed); meanwhile, an operator's ``end-session`` for every symbol at 03-10 18:00
    (the instance ran without it for a while) is 03-10's end. Back, the 03-11 end is due and
    the journal lacks it: sent once, and 03-12's at its time, once."""
    host = Host(tmp_path, instance, standby=False)
    assert host.supervise(host.cfg, "2026-03-09 12:00", "2026-03-09 17:00:01") == [
        None,
        utc("2026-03-09 17:00"),
    ]
    host.journal(("end", "2026-03-09 17:00:01"))
    host.orders("2026-03-09 18:00", "2026-03-10 17:59", 3600)
    host.journal(("end", "2026-03-10 18:00"))  # the operator's: 03-10's end
    host.orders("2026-03-10 18:30", "2026-03-11 16:30", 3600)
    back = Watch(host.cfg)
    polls = ["2026-03-12 12:00", "2026-03-12 12:00:01", "2026-03-12 16:59:59"]
    assert back.at(*polls) == [utc("2026-03-11 17:00"), None, None]
    host.journal(("end", "2026-03-12 12:00"))
    assert back.at("2026-03-12 17:00:00", "2026-03-12 17:00:01") == [
        utc("2026-03-12 17:00"),
        None,
    ]
    assert sends.count == 3


def test_an_end_the_router_never_journaled_is_sent_again_at_the_next_start(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Was (fixed): the router is crash-looping at 17:00 (a full journal disk, say); the supervisor
    puts the 03-10 end in the admin ring at 17:00:01 and remembers it as sent; the router
    exceeds ``restart_limit``, the instance stops and its rings, the end in them unread, are
    removed (a start makes new ones). Started again at 17:30 once the disk is fixed, the
    supervisor's record says 03-10 was sent, and it sends nothing: the journal holds no
    END_OF_SESSION for 03-10, so the whole day's DAY orders rest into the next session
    (which the module's own rule, "written first, a crash could lose the end", is meant to
    prevent). It should send the 03-10 end once: a new supervisor's rings are new, so an end
    the journal lacks was never applied, whatever the record says."""
    host = Host(tmp_path, instance, standby=False)
    host.orders("2026-03-10 09:00", "2026-03-10 16:59", 600)  # the day's DAY orders
    assert host.supervise(host.cfg, "2026-03-10 12:00", "2026-03-10 17:00:01") == [
        None,
        utc("2026-03-10 17:00"),
    ]
    doc = read_json(session_end_path(host.cfg))  # sent, the journal lacks it: said so
    assert doc is not None and (doc["end_ns"], doc["journaled"]) == (utc("2026-03-10 17:00"), False)
    # the router never read it: no END_OF_SESSION in the journal, the ring removed
    again = Watch(host.cfg)
    assert again.at("2026-03-10 17:30", "2026-03-10 17:30:01") == [utc("2026-03-10 17:00"), None]
    assert sends.count == 2
    host.journal(("end", "2026-03-10 17:30:01"))  # the restarted router journals it
    assert again.at("2026-03-10 17:30:02", "2026-03-11 12:00") == [None, None]
    doc = read_json(session_end_path(host.cfg))
    assert doc is not None and doc["end_ns"] == utc("2026-03-10 17:00") and "journaled" not in doc
    assert Watch(host.cfg).at("2026-03-11 12:00:01") == [None] and sends.count == 2


def test_a_flipped_digit_of_the_seq_an_end_was_sent_after_is_a_record_not_read(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The record's crc32 covers ``sent_after_seq`` too (review 224): flipped, the record is
    not read (the end that passed is due unless the journal holds it), never trusted."""
    host = Host(tmp_path, instance, standby=False)
    host.orders("2026-03-10 09:00", "2026-03-10 16:59", 600)
    assert host.supervise(host.cfg, "2026-03-10 12:00", "2026-03-10 17:00:01")[1] == utc(
        "2026-03-10 17:00"
    )
    path = session_end_path(host.cfg)
    doc = read_json(path)
    assert doc is not None and _is_int_field(doc, "sent_after_seq")
    doc["sent_after_seq"] += 10
    path.write_text(json.dumps(doc))
    ends = Watch(host.cfg).ends
    assert ends is not None and ends._load(utc("2026-03-10 17:30"))
    assert ends.last_sent_ns == utc("2026-03-09 17:00")  # not read: the end before it


def _is_int_field(doc: dict[str, object], key: str) -> bool:
    return isinstance(doc.get(key), int)


# -- an NTP step back around the end ------------------------------------------------------------


def _stepped_back_day(host: Host) -> None:
    """The primary's 03-10: orders every 10 min to 16:50, its end sequenced at 17:00:01,
    then chrony steps its clock back 3 s: commands stamped 16:59:58 to 17:00:00 follow the
    end, then the day goes on at a command a second to 17:01:00."""
    host.orders("2026-03-10 09:00", "2026-03-10 16:50", 600)
    host.journal(("end", "2026-03-10 17:00:01"))
    host.orders("2026-03-10 16:59:58", "2026-03-10 17:01:00", 1)


def test_a_standby_following_live_records_its_primarys_end_across_a_step_back(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """A standby's supervisor that polls as the entries arrive reads each new one: the end
    is found behind the stepped-back stamps, remembered, and never sent."""
    host = Host(tmp_path, instance, standby=True)
    standby = Watch(host.cfg)
    host.orders("2026-03-10 09:00", "2026-03-10 16:50", 600)
    assert standby.at("2026-03-10 12:00", "2026-03-10 17:00:00") == [None, None]
    host.journal(("end", "2026-03-10 17:00:01"))
    host.orders("2026-03-10 16:59:58", "2026-03-10 17:01:00", 1)
    assert standby.at("2026-03-10 17:01:01") == [None]
    doc = read_json(session_end_path(host.cfg))
    assert doc is not None and doc["end_ns"] == utc("2026-03-10 17:00")
    promoted = host.promote()
    assert host.supervise(promoted, "2026-03-10 17:01:02", "2026-03-10 18:00") == [None, None]
    assert sends.count == 0


def test_a_standby_promoted_after_a_step_back_does_not_send_its_primarys_end_again(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """Was (fixed): the primary journaled the 03-10 end at 17:00:01 and its clock was then stepped
    back 3 s (an NTP step, ``makestep``); the primary died at 17:01. The standby's
    supervisor had last looked at 17:00:00 (its record says 03-09), so the promoted instance
    looks for the end in the journal: the bisection for the first entry stamped at or after
    17:00 lands on the commands stamped 17:00:00 after the step, past the end, and the scan
    from there finds none: the end is sent a second time, expiring the DAY orders the new
    session took since. README (Operate, Session end): "one the primary journaled is never
    sent again". It should find the end the primary journaled and send nothing."""
    host = Host(tmp_path, instance, standby=True)
    standby = Watch(host.cfg)
    assert standby.at("2026-03-10 12:00", "2026-03-10 17:00:00") == [None, None]
    _stepped_back_day(host)
    promoted = host.promote()
    assert host.supervise(promoted, "2026-03-10 17:01:05", "2026-03-10 18:00") == [None, None]
    assert sends.count == 0


# -- the held promotion ------------------------------------------------------------------------


def test_a_held_promotions_schedule_made_at_the_standbys_start_reads_the_record_at_its_run(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """``held_promotion.run_standby`` makes the promoted instance's ``Supervisor`` (and so
    its ``SessionEnds``) when the standby starts, days before a promotion runs it. Its
    schedule must go on from the record the standby kept up to the promotion, not from the
    one there was at its making: the 03-11 end the primary journaled is not sent again, and
    the 03-12 end, which the primary straddled, is sent once."""
    host = Host(tmp_path, instance, standby=True)
    standby = Watch(host.cfg)
    promoted_cfg = load_profile(str(promotion.write_promoted_profile(str(host.path))))
    spare = Watch(promoted_cfg)  # made with the standby, polled only once promoted
    assert spare.ends is not None and not spare.ends.follows
    assert standby.at("2026-03-10 12:00") == [None]
    for day in ("10", "11"):
        host.orders(f"2026-03-{day} 12:00", f"2026-03-{day} 16:59", 900)
        host.journal(("end", f"2026-03-{day} 17:00:00"))
        assert standby.at(f"2026-03-{day} 17:00:01") == [None]
    host.orders("2026-03-11 17:10", "2026-03-12 16:59:50", 3600)
    assert standby.at("2026-03-12 16:59:59") == [None]
    promotion.begin_epoch(promoted_cfg, 2)  # the primary died at 16:59:55; promoted 17:00:20
    assert spare.at("2026-03-12 17:00:20") == [utc("2026-03-12 17:00")]
    host.journal(("end", "2026-03-12 17:00:20"))  # its router journals it
    assert spare.at("2026-03-12 17:00:21", "2026-03-12 20:00") == [None, None]
    assert sends.count == 1
    doc = read_json(session_end_path(promoted_cfg))  # remembered once journaled
    assert doc is not None and doc["end_ns"] == utc("2026-03-12 17:00")


def test_a_standby_down_across_its_primarys_end_sends_none_and_remembers_it(
    tmp_path: Path, instance: str, sends: Sends
) -> None:
    """The standby's supervisor was down over 03-10 17:00 (its host rebooted) while the
    primary's end reached the journal by replication; back at 17:40, it sends nothing and
    remembers the end from the journal, polled every second for a minute."""
    host = Host(tmp_path, instance, standby=True)
    assert host.supervise(host.cfg, "2026-03-10 12:00") == [None]
    host.orders("2026-03-10 12:00", "2026-03-10 16:59", 600)
    host.journal(("end", "2026-03-10 17:00:00"))
    back = Watch(host.cfg).ends
    assert back is not None
    start = utc("2026-03-10 17:40")
    assert [back.poll(start + n * S) for n in range(60)] == [None] * 60
    doc = read_json(session_end_path(host.cfg))
    assert doc is not None and doc["end_ns"] == utc("2026-03-10 17:00")
    assert sends.count == 0
