"""The supervisor's daily session end (``session_end.py``): ``supervisor.session_end_utc``
checked at load, the schedule's shell over a fake clock (sent once, remembered across a
restart, retried while the admin ring is another's), and the command it puts in the admin
ring."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from config import load_profile
from config.loader import ConfigError
from config.schema import ReplicationConfig, RingexConfig, SupervisorConfig
from procs.admin.client import AdminClient
from procs.common.record_codec import RecordCodec
from procs.common.records import AdminCommand, Record
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
)
from procs.common.types import AdminAction
from procs.supervisor.session_end import SessionEnds, send_end_of_session, session_end_path
from shm import Consumer, Ring, RingError
from tests.unit.supervisor.test_session_clock import utc

CODEC = RecordCodec()


def _profile(tmp_path: Path, value: str) -> str:
    path = tmp_path / "p.toml"
    path.write_text(f'var_dir = "{tmp_path}"\n[supervisor]\nsession_end_utc = "{value}"\n')
    return str(path)


# -- config -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["24:00", "17:60", "7:00", "17h00", "17:00:00", " 17:00", "1\uff17:00"]
)
def test_a_session_end_that_is_not_hh_mm_is_refused_naming_it(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        load_profile(_profile(tmp_path, value))
    message = str(refused.value)
    assert f"supervisor.session_end_utc {value!r}" in message
    assert "00:00 to 23:59" in message


@pytest.mark.parametrize(("value", "minute"), [("00:00", 0), ("17:00", 1020), ("23:59", 1439)])
def test_a_session_end_is_minutes_after_midnight_utc(
    tmp_path: Path, value: str, minute: int
) -> None:
    cfg = load_profile(_profile(tmp_path, value))
    assert cfg.supervisor.session_end_minute() == minute
    ends = SessionEnds.of(cfg)
    assert ends is not None and ends.minute == minute


def test_no_session_end_by_default_nor_on_a_standby() -> None:
    assert RingexConfig().supervisor.session_end_utc == ""
    assert SessionEnds.of(RingexConfig()) is None
    for profile in ("dev", "test", "latency"):
        assert SessionEnds.of(load_profile(profile)) is None, profile
    standby = RingexConfig(
        supervisor=SupervisorConfig(session_end_utc="17:00"),
        replication=ReplicationConfig(primary="127.0.0.1:9000"),
    )
    ends = SessionEnds.of(standby)  # its primary's end reaches it by the journal: it only
    assert ends is not None and ends.follows  # remembers (test_review8_session_end_failover)


# -- the schedule's shell ------------------------------------------------------------------------


class Sends:
    """A stand-in for the admin ring: counts sends, or refuses them like a busy ring."""

    def __init__(self) -> None:
        self.count = 0
        self.refuse: Exception | None = None

    def __call__(self) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.count += 1


def _ends(tmp_path: Path, sends: Sends, at: str = "17:00") -> SessionEnds:
    cfg = RingexConfig(
        instance="sessionends",
        var_dir=str(tmp_path),
        supervisor=SupervisorConfig(session_end_utc=at),
    )
    minute = cfg.supervisor.session_end_minute()
    assert minute is not None
    return SessionEnds(cfg, minute, sends)


def test_a_first_start_waits_for_the_next_end(tmp_path: Path) -> None:
    """Nothing remembered: the end that passed is not sent (turning the schedule on does not
    expire DAY orders at once); the next one is, once."""
    sends = Sends()
    ends = _ends(tmp_path, sends)
    assert ends.poll(utc("2026-03-10 18:00")) is None
    assert sends.count == 0
    assert session_end_path(ends.cfg).exists()
    assert ends.poll(utc("2026-03-11 16:59")) is None
    assert ends.poll(utc("2026-03-11 17:00:00")) == utc("2026-03-11 17:00")
    assert ends.poll(utc("2026-03-11 17:00:01")) is None
    assert ends.poll(utc("2026-03-11 23:00")) is None
    assert sends.count == 1


def test_a_restarted_supervisor_does_not_send_the_end_again(tmp_path: Path) -> None:
    sends = Sends()
    _ends(tmp_path, sends).poll(utc("2026-03-10 12:00"))  # first start: remembers 03-09
    assert _ends(tmp_path, sends).poll(utc("2026-03-10 17:00:01")) == utc("2026-03-10 17:00")
    restarted = _ends(tmp_path, sends)  # a second later, a new supervisor
    assert restarted.poll(utc("2026-03-10 17:00:02")) is None
    assert restarted.poll(utc("2026-03-11 09:00")) is None
    assert sends.count == 1


def test_downtime_across_days_sends_one_end(tmp_path: Path) -> None:
    sends = Sends()
    _ends(tmp_path, sends).poll(utc("2026-03-08 12:00"))
    back = _ends(tmp_path, sends)  # down from the 8th's noon to the 12th's
    assert back.poll(utc("2026-03-12 12:00")) == utc("2026-03-11 17:00")
    for n in range(1, 60):
        assert back.poll(utc("2026-03-12 12:00") + n * 10**9) is None
    assert sends.count == 1


def test_the_midnight_end_wraps(tmp_path: Path) -> None:
    sends = Sends()
    ends = _ends(tmp_path, sends, at="23:59")
    ends.poll(utc("2026-03-10 23:58"))
    assert ends.poll(utc("2026-03-11 00:00:30")) == utc("2026-03-10 23:59")
    assert ends.poll(utc("2026-03-11 23:58")) is None
    assert sends.count == 1


def test_a_refused_send_is_tried_again_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sends = Sends()
    ends = _ends(tmp_path, sends)
    ends.poll(utc("2026-03-10 12:00"))
    sends.refuse = RingError("ring 'gw0-cmd' already has a live producer, pid 4242")
    with caplog.at_level(logging.INFO, logger="ringex.supervisor"):
        for second in range(3):
            assert ends.poll(utc("2026-03-10 17:00") + second * 10**9) is None
        sends.refuse = None
        assert ends.poll(utc("2026-03-10 17:00:03")) == utc("2026-03-10 17:00")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "live producer, pid 4242" in warnings[0]
    sent = [r.getMessage() for r in caplog.records if "END_OF_SESSION sent" in r.getMessage()]
    assert sent == [
        "session end 2026-03-10T17:00Z: END_OF_SESSION sent to every symbol, DAY orders "
        "expire; the next at 2026-03-11T17:00Z"
    ]
    assert _ends(tmp_path, sends).poll(utc("2026-03-10 17:00:04")) is None  # remembered
    assert sends.count == 1


def test_a_record_that_cannot_be_written_is_logged_once_not_fatal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """var/ full: ``session_end.json`` cannot be written. The supervisor goes on (review 122:
    the OSError stopped the instance), the end sent is remembered in memory, and the failure
    is logged once for that end."""
    sends = Sends()
    ends = _ends(tmp_path, sends)
    ends.poll(utc("2026-03-10 12:00"))

    def full(*_args: object, **_kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("procs.supervisor.session_end.replace_durably", full)
    with caplog.at_level(logging.WARNING, logger="ringex.supervisor"):
        assert ends.poll(utc("2026-03-10 17:00:01")) == utc("2026-03-10 17:00")
        for second in range(2, 5):
            assert ends.poll(utc("2026-03-10 17:00") + second * 10**9) is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "not written (" in warnings[0] and "No space" in warnings[0]
    assert sends.count == 1


# -- through the admin rings ---------------------------------------------------------------------


@pytest.fixture
def router_line(admin_rings: str) -> Iterator[Consumer[Record]]:
    """What the router reads from the admin command ring."""
    ring = Ring.attach(admin_rings, gateway_commands(ADMIN_GATEWAY), CODEC)
    consumer = ring.consumer(ROUTER)
    yield consumer
    consumer.close()
    ring.close()


def _held_elsewhere(instance: str, ring_name: str, role: str) -> tuple[int, int]:
    """A child process holding ``role`` ("producer", or a consumer name) of ``ring_name``
    until its pipe is closed: (pid, the write end to close)."""
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        try:
            os.close(ready_r)
            os.close(done_w)  # else its read would never see the parent's close
            ring = Ring.attach(instance, ring_name, CODEC)
            _ = ring.producer() if role == "producer" else ring.consumer(role)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    assert os.read(ready_r, 1) == b"1"
    os.close(ready_r)
    return pid, done_w


def _release(held: tuple[int, int]) -> None:
    pid, done_w = held
    os.close(done_w)
    os.waitpid(pid, 0)


def test_the_supervisor_sends_end_of_session_for_every_symbol(
    admin_rings: str, router_line: Consumer[Record], tmp_path: Path
) -> None:
    cfg = RingexConfig(instance=admin_rings, var_dir=str(tmp_path))
    send_end_of_session(cfg)
    (command,) = router_line.read(64)
    assert isinstance(command, AdminCommand)
    assert command.action == AdminAction.END_OF_SESSION
    assert command.symbol == 0  # the router sends symbol 0 to every matcher
    assert command.arg > 0  # its reference: a restarted router does not journal it twice


def test_an_operator_holding_the_admin_ring_delays_the_end_until_done(
    admin_rings: str, router_line: Consumer[Record], tmp_path: Path
) -> None:
    """``ringex admin`` (another process) has the admin ring: the poll does not wait for it;
    the next poll after it let go sends the end."""
    cfg = RingexConfig(
        instance=admin_rings,
        var_dir=str(tmp_path),
        supervisor=SupervisorConfig(session_end_utc="17:00"),
    )
    ends = SessionEnds.of(cfg)
    assert ends is not None
    ends.poll(utc("2026-03-10 12:00"))
    held = _held_elsewhere(admin_rings, gateway_commands(ADMIN_GATEWAY), "producer")
    try:
        assert ends.poll(utc("2026-03-10 17:00")) is None
        assert router_line.read(64) == []
    finally:
        _release(held)
    assert ends.poll(utc("2026-03-10 17:00:01")) == utc("2026-03-10 17:00")
    (command,) = router_line.read(64)
    assert isinstance(command, AdminCommand) and command.action == AdminAction.END_OF_SESSION


def test_a_refused_admin_client_leaves_the_command_ring_free(
    admin_rings: str, tmp_path: Path
) -> None:
    """The reply ring's reader is another admin's: the client is refused, and it does not
    keep the command ring's writer role (the supervisor lives on: the operator's next
    ``ringex admin`` would be refused for as long as it runs)."""
    cfg = RingexConfig(instance=admin_rings, var_dir=str(tmp_path))
    held = _held_elsewhere(
        admin_rings, gateway_replies(ADMIN_GATEWAY), gateway_consumer(ADMIN_GATEWAY)
    )
    try:
        with pytest.raises(RingError, match="is attached by live pid"):
            AdminClient(cfg)
        ring = Ring.attach(admin_rings, gateway_commands(ADMIN_GATEWAY), CODEC)
        try:
            assert ring.info().producer_pid == 0
        finally:
            ring.close()
    finally:
        _release(held)
    AdminClient(cfg).close()
