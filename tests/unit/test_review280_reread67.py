"""Review 280: the session's second reread of its own change (reviews 270-279's fixes),
read against their callers.

Reviewed: ``procs/gateway/gap_recovery.py`` (the resend's pace), ``connections.py``
(``_verify``'s Logon counts), ``connection.py`` (``_park_unsent``),
``procs/supervisor/main.py`` (``_wait_ready``'s message) with ``exit_reason.last_logged``,
``config/fields.py`` (``host_refused``), ``procs/core/recovery.py`` (removed assets).

Faults found (each fixed; its test says what it was, or where none could force it, read):

1. The resend's pace (review 277) held what the session sent meanwhile, counted in the 4
   MiB a client may leave unsent: a client recovering a long history while its orders
   filled was dropped as not reading. Withdrawn: review 277's fault 2 is a documented
   limit (its test a strict xfail).
2. A right password for a CompID logged on already spent its address's failed-Logon
   token: one reconnect loop (or a host's half-open sessions reconnecting) locked the
   host's other CompIDs out. It spends the CompID's own now (review 277's tests).
3. ``_wait_ready``'s new message quoted the log's last line, which a process that died
   silently (SIGKILL, OOM) had not written: its last run's, a clean stop's or an old
   traceback. ``last_logged`` reads from where the latest run's lines begin
   (``Child.log_from``, taken as ``_spawn`` opens the log).
4. The parking guard (review 279) was on ``connection_lost`` alone: ``abort`` (a stalled
   client's) parked on a store a newer session of the CompID had numbered anew. It is in
   ``_park_unsent`` now, both paths (read, not forced).
5. ``host_refused`` (review 279) told "127.1." it is no address, though ``listen_address``
   takes "127.1": an address is what ``inet_aton`` reads.
6. ``recover``'s removed-asset branch (review 278) blamed the removed assets for any
   refusal naming an asset; only an unknown asset's now.

Left (leads): a fee refusal at a router restart (not its start) restarts it until the
restart limit, as before review 278 (the supervisor checks units before a restart, not
fees); a replace of a triggered stop-limit whose StopPx is off a tick raised since is
refused (``price_ticks(f[99])``).
"""

from __future__ import annotations

from pathlib import Path

from config.fields import host_refused
from procs.supervisor.exit_reason import last_logged


def test_a_run_that_logged_nothing_is_not_quoted_its_last_runs_line(tmp_path: Path) -> None:
    """Scenario: a log whose last run ended "stopped cleanly"; a new run appends nothing
    and dies, then one appends a line. Expected: nothing quoted for the first, its own line
    for the second. Was (fixed): "stopped cleanly" quoted as why the new run exited."""
    log = tmp_path / "router.log"
    log.write_bytes(b"2026-11-30 12:00:00,000 ringex.router stopped cleanly\n")
    offset = log.stat().st_size
    assert last_logged(log, offset) is None
    whole = last_logged(log)  # from the start: the last run's line
    assert whole is not None and "stopped cleanly" in whole
    with open(log, "ab") as f:
        f.write(b"procs.core.fees.FeeChangeError: BTC-USD taker 20 -> 30 bps\n")
    assert last_logged(log, offset) == "procs.core.fees.FeeChangeError: BTC-USD taker 20 -> 30 bps"


def test_a_short_ipv4_address_with_a_trailing_dot_is_called_one() -> None:
    """Scenario: "127.1." (the resolver's 127.0.0.1). Expected: an IPv4 address with a
    trailing dot, "write 127.1". Was (fixed): "is not an IP literal or a host name"."""
    assert host_refused("127.1.") == "is an IPv4 address with a trailing dot: write 127.1"
    assert host_refused("127.1") is None
