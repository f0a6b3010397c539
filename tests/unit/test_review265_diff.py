"""Review 265: a hostile reread of this session's changes (``git diff $(cat
var/session66_base) -- procs shm config tests/bench``).

Reviewed: ``procs/supervisor/main.py`` (``_not_ready``, ``_wait_ready``, the preflight),
``procs/supervisor/plan.py`` (``ready_counter``), ``procs/dbwriter/main.py`` (``_saying``,
``_reviving``), ``procs/dbwriter/writer.py`` (``ready``/``revive`` in ``start`` and
``_retry``), ``shm/counters.py`` (``Counters.peek``), ``procs/gateway/connection.py``
(``_park_unsent``, ``connection_lost``), ``procs/gateway/connections.py`` and
``session_stores.py`` (``touch``, ``fix_descriptors``), ``rest_connections.py``,
``gap_recovery.py`` (``waiting_from``), ``history.py`` (the pool's ``check``),
``config/fields.py`` (``host_refused``), ``config/refused_value.py`` (``cut_values``),
``config/schema.py`` (listeners, ``primary_address``, a matcher named ``dbwriter``),
``procs/supervisor/preflight.py`` (``embedded_refused``), ``procs/common/pending_runs.py``
(``instances_run_by``) with ``procs/cli.py`` (``_stop_starts``). Rigs: review 204's
full-buffer FIX client on ``harness.py``'s in-process exchange; ``load_profile`` on TOML
files written per test; ``cli._stop_starts`` on a stand-in start process.

Faults found (each fixed; its test says what it was):

1. ``procs/gateway/connection.py:313-319`` (``connection_lost``: an error parks
   ``_park_unsent(session, None)``, i.e. from the OLDEST MARK, ``:280``) with ``:190-193``
   (marks are dropped only inside ``write``, against the buffer size at that moment): a mark
   outlives its bytes whenever the transport's buffer drains with no later ``write`` (the
   kernel takes it while the session is quiet). A client sent 400 reports in one burst reads
   every one, then its connection is reset (RST); its logon with ResetSeqNumFlag gets all
   400 New reports AGAIN under new numbers, though the gateway's buffer was empty at the
   reset. README promises only that messages "never handed to the kernel" are sent anew ("a
   few the client saw may come twice"). Fix: factor ``write``'s mark-dropping loop
   (``:192-193``) into ``_drop_handed()`` and also call it where the loop visits each
   connection without writing (``check_stalled``, about once a second, ``data_received``,
   ``resume_writing``), and in ``connection_lost`` with an error park from the oldest mark
   only where the last size seen of the transport's buffer was not 0.
2. ``config/schema.py:284-290`` (``primary_address``): ``host_refused``'s reason is dropped,
   so ``primary = "[::ffff:10.0.0.1]:9900"`` is refused with "is not host:port (an IPv6 host in
   brackets: [::1]:9900)": it is exactly that. Fix: ``if why := host_refused(host)`` raise
   "replication.primary ...: host ... {why}", as ``_check_listeners.listen`` does.
3. ``config/fields.py:28`` (``HOST_PATTERN``, now applied to ``replication.primary`` by
   ``primary_address``): a primary that loaded before this session's change is refused: an
   absolute host name with its trailing dot ("db1.example.com.:9900", which ``getaddrinfo``
   resolves) and a link-local address whose zone names a Linux interface with a hyphen or a
   dot ("[fe80::1%br-lan]:9900", "[fe80::1%eth0.100]:9900": zone ids are interface names,
   up to 15 bytes of almost anything). Fix: accept one trailing dot after the last label, and
   a zone of ``[A-Za-z0-9_.-]{1,15}`` (or any ``ipaddress.IPv6Address`` accepts).
4. ``procs/common/pending_runs.py:86-96`` (``instances_run_by``) with ``procs/cli.py:260,
   264-267``: any status file under ``var_dir`` whose ``supervisor_pid`` is a start's pid
   counts, whatever its state and ``supervisor_started``: a long-stopped instance "old" whose
   supervisor had the pid the new start of "new" has now (pids are reused, quickly in a
   container) makes ``ringex stop`` say "instance old stopped (started from this file, which
   now names new)": it stopped "new". README: "``ringex stop`` and ``status`` trust
   ``status.json``'s pids only while each process's start time matches". Fix: keep a status
   only where ``holder_alive(pid, status["supervisor_started"])`` (``shm/liveness.py``).

Found sound (plain tests): ``Counters.peek`` is None without the page or the counter and the
value once set; a dbwriter's plan carries its ready counter (no other process's does);
``SessionStores.touch`` keeps an ended session's store among the
spare; ``fix_descriptors`` counts the spare stores; ``cut_values`` leaves the prose between
two quoted names whole and cuts a long quoted value with spaces; a matcher named
``dbwriter`` is refused with a message naming the page; a listener on an IPv4-mapped host
is refused naming the IPv4 address to use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from config import load_profile
from config.loader import ConfigError
from config.refused_value import cut_values
from procs import cli
from procs.common.stats import DBWRITER_COUNTERS, DBWRITER_PAGE
from procs.gateway.session_stores import (
    DESCRIPTORS_PER_SESSION,
    SPARE,
    SessionStores,
    fix_descriptors,
)
from procs.supervisor.plan import plan
from shm.counters import Counters
from shm.liveness import process_start
from tests.unit.gateway.harness import Client, Harness, run_scenario, settled
from tests.unit.gateway.test_review99_tls import _reads
from tests.unit.gateway.test_review204_stop_output import (
    LIMIT_S,
    N,
    _acked,
    _drain,
    _exchange,
    _full_buffers,
    _gw,
)

#: "A few the client saw may come twice" (README): what the kernel took just before.
A_FEW = 10


def _load(tmp_path: Path, text: str) -> str:
    """The ConfigError ``text`` is refused with, or "" where it loads."""
    path = tmp_path / "ringex.toml"
    path.write_text(text)
    try:
        load_profile(str(path))
    except ConfigError as exc:
        return str(exc)
    return ""


# -- 1: a reset after every report was read ---------------------------------------------------


def test_a_reset_after_the_client_read_everything_carries_nothing_again(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE has 400 orders accepted while she reads nothing (their New reports
    wait in the gateway's transport buffer, one write); she then reads every one of the 400
    (the gateway's buffer is empty), and her connection is reset (SO_LINGER 0, an RST); she
    logs on again with ResetSeqNumFlag, a second or more after her last read.
    Expected: nothing she read is carried again (at most a few the kernel held: README; a
    reset within the second of a drain carries what drained since the last look again).
    Was (fixed): all 400 New reports come again under new numbers: the write's mark outlived its
    bytes, and the reset parks from it."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = _gw(h)
        alice = await _full_buffers(h, port)
        _reads(alice, True)
        seen: set[bytes] = set()
        deadline = asyncio.get_running_loop().time() + 30
        while len(seen) < N and asyncio.get_running_loop().time() < deadline:
            if (m := await alice.recv(5)) is None:
                break
            seen |= _acked([m])
        assert len(seen) == N, f"read {len(seen)} of {N} New reports"
        buffered = [c.transport.get_write_buffer_size() for c in gw.connections if c.transport]
        assert buffered == [0], buffered  # every byte handed to the kernel, and read
        # the gateway's once-a-second look forgets the marks of writes the kernel took
        await settled(lambda: all(not c._marks for c in gw.connections), 5)
        assert alice.writer is not None
        sock = alice.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        alice.writer.transport.abort()  # an RST
        await settled(lambda: not gw.connections, 30)
        assert not gw.connections, "the gateway did not see the reset"
        again = Client("ALICE")
        await again.connect(port)
        await again.logon(reset=True)
        twice = _acked(await _drain(again)) & seen
        assert len(twice) <= A_FEW, f"{len(twice)} New reports she had read came again"

    run_scenario(h, scenario, LIMIT_S)


# -- 2, 3: replication.primary's host ---------------------------------------------------------


def test_a_primary_refused_for_its_host_says_why(tmp_path: Path) -> None:
    """Scenario: ``[replication] primary = "[1::2::3]:9900"`` (no IPv6 literal), in brackets
    as the hint asks; and ``"[::ffff:10.0.0.1]:9900"`` (IPv4-mapped).
    Expected: the first refused saying why (no IP literal), the second taken: a connection
    to an IPv4-mapped address works on a dual-stack host (only a listener's binds nowhere;
    the session's reread of this fix).
    Was (fixed): "is not host:port (an IPv6 host in brackets: [::1]:9900)": the reason
    ``host_refused`` gave is dropped, and the message contradicts the value."""
    message = _load(tmp_path, "[replication]\nprimary = '[1::2::3]:9900'\n")
    assert message, "it loaded"
    assert "is not an IP literal" in message and "host:port" not in message, message
    assert not _load(tmp_path, "[replication]\nprimary = '[::ffff:10.0.0.1]:9900'\n")


@pytest.mark.parametrize(
    "primary",
    ["db1.example.com.:9900", "[fe80::1%br-lan]:9900", "[fe80::1%eth0.100]:9900"],
    ids=["trailing-dot", "zone-hyphen", "zone-vlan"],
)
def test_a_primary_host_a_standby_can_connect_to_loads(tmp_path: Path, primary: str) -> None:
    """Scenario: a standby's ``replication.primary`` is an absolute host name (its trailing
    dot) or a link-local IPv6 address whose zone is a Linux interface name with a hyphen or a
    dot (a bridge, a VLAN): each resolves (``getaddrinfo``) and loaded before this session.
    Expected: it loads. Was (fixed): refused as "is not host:port" (``HOST_PATTERN``, now applied to
    the primary's host, takes no trailing dot and a zone of letters and digits only)."""
    import ipaddress  # noqa: PLC0415  (the proof the zone is an IP literal's)

    host = primary.rsplit(":", 1)[0].strip("[]")
    if "%" in host:
        ipaddress.IPv6Address(host)  # Python's own parser takes it
    assert _load(tmp_path, f"[replication]\nprimary = {primary!r}\n") == ""


# -- 4: ringex stop naming an instance ------------------------------------------------------


def test_stop_of_a_start_does_not_name_a_stale_instance_with_its_reused_pid(
    tmp_path: Path,
) -> None:
    """Scenario: ``var/old/run/status.json`` is the status of instance "old", stopped long
    ago, whose supervisor's pid is the pid a start of instance "new" has now (its start time
    differs); ``ringex stop`` finds the start of "new" under way (``_stop_starts``).
    Expected: "instance new stopped (its start was under way)": "old" was not running.
    Was (fixed): "instance old stopped (started from this file, which now names new)"."""
    var = tmp_path / "var"
    profile = tmp_path / "new.toml"
    profile.write_text(f'instance = "new"\nvar_dir = "{var}"\n')
    cfg = load_profile(str(profile))
    start = subprocess.Popen(["sleep", "60"])  # the start of "new" under way
    try:
        started = process_start(start.pid)
        assert started is not None
        status = var / "old" / "run" / "status.json"
        status.parent.mkdir(parents=True)
        status.write_text(
            json.dumps(
                {
                    "instance": "old",
                    "state": "stopped",
                    "supervisor_pid": start.pid,
                    "supervisor_started": started - 86_400 * 100,
                }  # another process, long ago
            )
        )
        args = argparse.Namespace(config=str(profile), profile=None, timeout=10.0)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = cli._stop_starts(cfg, args, [start.pid])
        assert code == 0, out.getvalue()
        assert start.wait(10) is not None  # it was stopped
        assert "old" not in out.getvalue(), out.getvalue()
        assert "instance new stopped" in out.getvalue(), out.getvalue()
    finally:
        start.kill()
        start.wait()


# -- sound -------------------------------------------------------------------------------------


def test_peek_reads_the_ready_counter_once_its_page_has_it(instance: str) -> None:
    """Scenario: the supervisor's ``Counters.peek`` before the writer's page exists, for a
    counter it lacks, and after ``ready`` is set. Expected: None, None, then 1. Now: so."""
    assert Counters.peek(instance, DBWRITER_PAGE, "ready") is None
    page = Counters.open(instance, DBWRITER_PAGE, DBWRITER_COUNTERS)
    try:
        assert Counters.peek(instance, DBWRITER_PAGE, "nothing") is None
        assert Counters.peek(instance, DBWRITER_PAGE, "ready") == 0
        page.values[DBWRITER_COUNTERS.index("ready")] = 1
        assert Counters.peek(instance, DBWRITER_PAGE, "ready") == 1
    finally:
        page.close()


def test_the_dbwriter_is_ready_by_its_counter_and_only_it(tmp_path: Path) -> None:
    """Scenario: the plan of a config with the database on. Expected: the dbwriter waits on
    (stats-dbwriter, ready), no other process on a counter. Now: so."""
    profile = tmp_path / "p.toml"
    profile.write_text('instance = "r265plan"\n[database]\nenabled = true\n')
    specs = {s.name: s for s in plan(load_profile(str(profile)))}
    assert specs["dbwriter"].ready_counter == (DBWRITER_PAGE, "ready")
    assert [n for n, s in specs.items() if s.ready_counter] == ["dbwriter"]


def test_fix_descriptors_counts_the_spare_stores() -> None:
    """Scenario: the descriptors a gateway's FIX side may hold. Expected: 4 a session and
    two for each of the 64 spare stores. Now: so."""
    assert fix_descriptors(10) == 10 * DESCRIPTORS_PER_SESSION + 2 * SPARE


def test_session_stores_touch_keeps_an_ended_session_among_the_spare(tmp_path: Path) -> None:
    """Scenario: SPARE + 1 idle stores opened in turn, the first touched (its session ended
    last) before one more is opened. Expected: the first stays open, the second is closed.
    Now: so."""
    stores = SessionStores(tmp_path, 4, lambda _c: False, lambda: None)
    try:
        for k in range(SPARE):
            stores.get(f"C{k}")
        stores.touch("C0")
        stores.get("LAST")
        opened = [f"C{k}" for k in range(SPARE) if _is_open(stores, f"C{k}")]
        assert "C0" in opened and "C1" not in opened, opened[:3]
    finally:
        stores.close()


def _is_open(stores: SessionStores, comp_id: str) -> bool:
    try:
        stores[comp_id]
    except KeyError:
        return False
    return True


def test_cut_values_keeps_prose_between_quoted_names_and_cuts_a_long_one() -> None:
    """Scenario: a message with prose of 100 characters between two quoted names, and one
    quoted value of 300 characters with spaces. Expected: the first whole, the second cut to
    80 and "...". Now: so."""
    prose = "x " * 50
    text = f"symbol 'BTC-USD' {prose} and 'ETH-USD'"
    assert cut_values(text) == text
    long = "'" + "word " * 60 + "'"
    assert cut_values(f"value {long} refused") == f"value '{('word ' * 16)}...' refused"


def test_a_matcher_named_dbwriter_and_a_mapped_listener_are_refused(tmp_path: Path) -> None:
    """Scenario: a matcher named ``dbwriter``; a gateway listening on ``::ffff:127.0.0.1``.
    Expected: each refused naming why (the page; IPv4-mapped, use 127.0.0.1). Now: so."""
    matcher = '[[matchers]]\nname = "dbwriter"\nsymbols = ["BTC-USD", "ETH-USD"]\n'
    assert "stats-dbwriter" in _load(tmp_path, matcher)
    listener = '[[gateways]]\nname = "gw1"\nid = 1\nhost = "::ffff:127.0.0.1"\n'
    message = _load(tmp_path, listener)
    assert "IPv4-mapped" in message and "use 127.0.0.1" in message, message


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q", f"--basetemp=/tmp/r265-{os.getpid()}"]))
