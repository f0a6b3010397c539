"""Review 131: the docstrings of more of ``procs/common/`` held against the code.

This file: ``events_after``, ``gc_policy``, ``open_files``, ``parent_death``,
``published_through``, ``rules_version``, ``sd_notify``, ``tls`` and ``endpoints``.
``..._docstrings2.py``: ``stopping``, ``ring_waker``, ``embedded_postgres``, ``exec_ids``,
``stats``, ``token_bucket`` and ``apikeys``. Each statement about behaviour is a check with
small inputs, ``tmp_path``, fakes of the limits, real sockets, certificates made by the
``openssl`` tool, one subprocess tree (parent death) and one real PostgreSQL (the session's
``pg`` fixture of ``tests/unit/conftest.py``).

Convention: a test's docstring quotes the claims it checks in double quotes ("..." marks an
elision) and names the code; ``said(...)`` first asserts each quote is still in the source of
the named modules (docstrings and ``#:`` comments), whitespace folded. A claim found right is
a plain test; a disagreement is ``xfail(strict=True, raises=AssertionError)`` asserting what
the docstring says, its reason naming the side to fix.

Disagreements found (both files), all fixed since:

- ``endpoints``: "each gateway's FIX and REST address"; the FIX address of an IPv6 host is
  written ``::1:9878`` (procs/common/endpoints.py:18), itself a valid IPv6 address, where
  the REST URL brackets it and ``config.fields.host_and_port`` says ``ringex status`` writes
  ``[::1]:9900``. Code side: ``url_host(g.host)``.
- ``endpoints``: "Where an instance's clients connect"; a wildcard host (``0.0.0.0``, ``::``)
  is shown as the URL (endpoints.py:23-28), which ``procs/marketdata/web.py`` itself calls
  "no use to a browser as a URL". Either side.
- ``open_files.connections_room``: "returns how many connections fit"; with no room at all it
  returns 1 (open_files.py:38). Docstring side ("at least one").
- ``exec_ids.ExecIdBlocks.start``: "Above every id reserved before (the file's mark)"; it
  returns the mark itself (exec_ids.py:79), an id reserved and possibly used. Docstring side
  ("not below"; ``counter_start`` is what is above).
- ``apikeys.ApiKeyStore.create``: refuses "a label ... with control characters"; it refuses
  every non-printable one (``str.isprintable``, apikeys.py:153), a no-break space included,
  saying "has control characters". Docstring and message side, or test the category.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import logging
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest

from config.edges import RestConfig
from config.schema import GcConfig, ReplicationConfig, RingexConfig
from procs.common import endpoints as ep
from procs.common import gc_policy, open_files, sd_notify, tls
from procs.common import published_through as pt
from procs.common.events_after import events_after
from procs.common.journal import HEADER_SIZE, JournalRulesError, list_segments
from procs.common.rules_version import RULES_VERSION
from tests.unit.common.test_sd_notify import listener, receive
from tests.unit.router.test_journal import fill, reader

ROOT = Path(__file__).resolve().parents[3]
__all__ = ["listener"]  # the fixture, reused


def said(*names: str) -> None:
    """Each "quoted" span of the calling test's docstring (each part around "..."), whitespace
    folded, is in the source of one of the modules named (``procs.common.<name>``, or a dotted
    name), docstrings and ``#:`` comments."""
    caller = sys._getframe(1)
    doc = caller.f_globals[caller.f_code.co_name].__doc__
    quotes = re.findall(r'"(.+?)"', " ".join(doc.split()))
    modules = [importlib.import_module(n if "." in n else f"procs.common.{n}") for n in names]
    texts = [" ".join(re.sub(r"(?m)^\s*#:?", " ", inspect.getsource(m)).split()) for m in modules]
    assert quotes
    for quote in quotes:
        for part in filter(None, (p.strip() for p in quote.split("..."))):
            assert any(part in text for text in texts), (part, names)


# -- events_after.py ------------------------------------------------------------------------


def ev(seq: int, n: int) -> Any:
    return SimpleNamespace(seq=seq, n=n)


def pairs(events: list[Any]) -> list[tuple[int, int]]:
    return [(e.seq, e.n) for e in events]


def test_events_after_skips_earlier_seqs_and_the_first_part_of_seq() -> None:
    """events_after.py: "every event of the commands before ``seq`` and, of the command at
    ``seq``, the first ``part`` of its events (None: all of them)"; ``events_after``: "those
    of later seqs, and of ``seq`` all but the first ``part``"."""
    said("events_after")
    events = [ev(1, 0), ev(2, 0), ev(2, 1), ev(2, 2), ev(3, 0)]
    kept, left = events_after(events, 2, 1)
    assert pairs(kept) == [(2, 1), (2, 2), (3, 0)] and left == 0
    kept, left = events_after(events, 2, None)
    assert pairs(kept) == [(3, 0)] and left is None
    assert events_after(events, 2, 0)[0] == events[1:]


def test_events_after_returns_what_is_left_of_part_for_the_next_batch() -> None:
    """``events_after``: "Returns them with what is left of ``part`` for a next batch"; the
    module: "A command's events may be cut by a read's end"."""
    said("events_after")
    kept, left = events_after([ev(2, 0), ev(2, 1)], 2, 3)
    assert kept == [] and left == 1
    kept, left = events_after([ev(2, 2), ev(2, 3), ev(4, 0)], 2, left)
    assert pairs(kept) == [(2, 3), (4, 0)] and left == 0


# -- gc_policy.py ---------------------------------------------------------------------------


def test_settle_freezes_and_sets_the_thresholds_with_no_full_collection() -> None:
    """gc_policy.py: "``freeze``: collect once, then ``gc.freeze()``"; "``threshold0`` /
    ``threshold1``: the young and middle generations, CPython's defaults"; "``threshold2 =
    0``: no full collection starts on its own"; "Set ``threshold2`` (10 is CPython's) to have
    full collections back"; ``NEVER``: "one a second would take 68 years"."""
    said("gc_policy")
    assert GcConfig() == GcConfig(freeze=True, threshold0=700, threshold1=10, threshold2=0)
    assert int(gc_policy.NEVER / (365.25 * 86_400)) == 68
    before = gc.get_threshold()
    try:
        gc_policy.settle(GcConfig())
        assert gc.get_threshold() == (700, 10, gc_policy.NEVER) and gc.get_freeze_count() > 0
        gc.unfreeze()
        gc_policy.settle(GcConfig(freeze=False, threshold2=10))
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


# -- open_files.py --------------------------------------------------------------------------

INFINITY = -1


def limits(monkeypatch: pytest.MonkeyPatch, soft: int, hard: int, in_use: int = 20) -> list[Any]:
    """``open_files`` over fake limits and ``in_use`` open descriptors; the setrlimit calls."""
    now, asked = [soft, hard], []

    def setrlimit(which: int, value: tuple[int, int]) -> None:
        asked.append(value)
        if value[0] > now[1] and now[1] != INFINITY:
            raise ValueError("not allowed to raise maximum limit")
        now[:] = value

    fake = SimpleNamespace(
        RLIMIT_NOFILE=7, RLIM_INFINITY=INFINITY, getrlimit=lambda which: tuple(now),
        setrlimit=setrlimit,
    )  # fmt: skip
    monkeypatch.setattr(open_files, "resource", fake)
    monkeypatch.setattr(open_files, "os", SimpleNamespace(listdir=lambda p: range(in_use)))
    return asked


def test_connections_room_raises_the_soft_limit_far_enough_or_to_the_hard_one(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """open_files.py: "``connections_room`` raises it towards the hard limit at start and says
    what fits"; ``connections_room``: "far enough for ``wanted`` connections"; "the limit
    check answers it 503 instead"; ``FD_MARGIN``: "Descriptors kept for what is not a
    client"."""
    said("open_files")
    asked = limits(monkeypatch, 1024, 1 << 20)
    assert open_files.connections_room(5000) == 5000 and asked == [(5084, 1 << 20)]
    asked = limits(monkeypatch, 1024, 2000)
    with caplog.at_level(logging.WARNING, "ringex"):
        assert open_files.connections_room(5000) == 2000 - 20 - 64 and asked == [(2000, 2000)]
    assert "the others answered 503" in caplog.text
    asked = limits(monkeypatch, 1 << 16, 1 << 20)
    assert open_files.connections_room(100) == 100 and asked == []  # enough already
    limits(monkeypatch, INFINITY, INFINITY)
    assert open_files.connections_room(10**9) == 10**9
    real = open_files.connections_room  # and the real limits: 10 fit
    monkeypatch.undo()
    assert real(10, warn=False) == 10


def test_connections_room_is_at_least_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """``connections_room``: "returns how many connections fit (at least one)" (review 131:
    the floor was unsaid): no room for a client still answers 1."""
    said("open_files")
    limits(monkeypatch, 64, 64, in_use=30)  # 30 open + the 64 kept: no room for a client
    assert open_files.connections_room(10, warn=False) == 1


# -- parent_death.py ------------------------------------------------------------------------

#: The middle process: checks the ppid test on itself (SIGUSR1), then starts a plain child and
#: a deaf one (it ignores SIGTERM: its handler only notes it) and sleeps until killed.
MIDDLE = r"""
import os, signal, subprocess, sys, time
from procs.common.parent_death import die_with_parent, _LIBC
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
ok = die_with_parent(signal.SIGUSR1, parent=os.getppid() + 4_000_000)  # "died" already
time.sleep(0.01)
die_with_parent(0)  # no signal at our own parent's death
me = os.getpid()
plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                         preexec_fn=lambda: die_with_parent(parent=me))
deaf = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(me)],
                        stdout=subprocess.PIPE)
deaf.stdout.readline()
print(ok, got == [signal.SIGUSR1], _LIBC is not None, plain.pid, deaf.pid, flush=True)
time.sleep(30)
"""
DEAF = r"""
import os, signal, sys, time
from procs.common.parent_death import die_with_parent, kill_when_orphaned
signal.signal(signal.SIGTERM, lambda s, f: open(sys.argv[1], "a").write("term\n"))
die_with_parent(parent=int(sys.argv[2]))
kill_when_orphaned(0.5, 0.05)
print("ready", flush=True)
while True:
    time.sleep(0.01)
"""


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in "ZX"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_a_parents_death_signals_its_children_and_a_deaf_one_is_killed(tmp_path: Path) -> None:
    """parent_death.py: "the kernel sends it ``signal`` the moment the parent thread that made
    it dies"; ``die_with_parent``: "a parent that died before the call is then caught by the
    ppid check, and the signal sent at once"; ``kill_when_orphaned``: "SIGKILL this process
    ``grace_s`` after its parent died"; "a process that is hung, or deaf to it, would
    otherwise live on"; ``_LIBC``: "Loaded once, in the parent"."""
    said("parent_death")
    marker = tmp_path / "deaf-got"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    middle = subprocess.Popen(
        [sys.executable, "-c", MIDDLE, DEAF, str(marker)], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    pids: list[int] = []
    try:
        assert middle.stdout is not None
        ok, caught, loaded, *numbers = middle.stdout.readline().split()
        pids = [int(n) for n in numbers]
        assert (ok, caught, loaded) == ("True", "True", "True")
        time.sleep(0.1)
        assert not any(gone(p) for p in pids)
        middle.kill()
        middle.wait(5)
        died = time.monotonic()
        while not all(gone(p) for p in pids) and time.monotonic() - died < 10:
            time.sleep(0.02)
        assert gone(pids[0]) and gone(pids[1])
        assert time.monotonic() - died >= 0.3  # the deaf one lived out (most of) its grace
        assert marker.read_text() == "term\n"  # it had the signal, and lived on until killed
    finally:
        for pid in pids:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        if middle.poll() is None:
            middle.kill()
            middle.wait(5)
        if middle.stdout is not None:
            middle.stdout.close()


# -- published_through.py -------------------------------------------------------------------


def test_published_is_read_as_a_seq_or_0(tmp_path: Path) -> None:
    """published_through ``read``: "0 when it is absent or does not read as one (what a crash
    of the machine can leave)"."""
    said("published_through")
    assert pt.read(tmp_path) == 0
    for text, seq in ((b"17\n", 17), (b"", 0), (b"1", 1), (b"-3\n", 0), (b"\xff1", 0)):
        (tmp_path / pt.FILE).write_bytes(text)
        assert pt.read(tmp_path) == seq, text


def test_note_writes_at_most_once_every_second_and_the_first_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """published_through.py: "at most once every ``EVERY_S`` (the first of a run at once)";
    "without an fsync"; ``note``: "written unless the file was written less than ``EVERY_S``
    ago"; "so the last mark of a burst is written within a second of it"; "A write that fails
    (a full disk) is logged once and tried again"."""
    said("published_through")
    now = [100.0]
    monkeypatch.setattr(pt, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("an fsync"))
    (tmp_path / "m").mkdir()
    writer = pt.PublishedThrough(tmp_path / "m")
    writer.note(5)
    assert pt.read(tmp_path / "m") == 5
    now[0] += 0.5
    writer.note(9)
    assert pt.read(tmp_path / "m") == 5
    now[0] += 0.5
    writer.note(9)  # the idle step a second on
    assert pt.read(tmp_path / "m") == 9
    (tmp_path / "m" / pt.FILE).unlink()
    (tmp_path / "m" / (pt.FILE + ".tmp")).mkdir()  # the write fails
    with caplog.at_level(logging.WARNING, "ringex.matcher"):
        for _ in range(3):
            now[0] += 1
            writer.note(11)
    assert caplog.text.count("not written") == 1 and pt.read(tmp_path / "m") == 0
    (tmp_path / "m" / (pt.FILE + ".tmp")).rmdir()
    now[0] += 1
    writer.note(11)
    assert pt.read(tmp_path / "m") == 11


# -- rules_version.py -----------------------------------------------------------------------


def test_segments_record_the_rules_and_a_replay_refuses_another_naming_both(
    tmp_path: Path,
) -> None:
    """rules_version.py: "each journal segment records the version it was written under (its
    header), and a replay refuses entries of another version (``JournalRulesError``, naming
    the segment and both versions)"; "0 in a segment means a build from before versions were
    recorded"; "History: 1, ... 2, a transfer's idempotency key"."""
    said("rules_version")
    assert RULES_VERSION == 3
    fill(tmp_path, 3)
    [(_, seg)] = list_segments(tmp_path)
    head = seg.read_bytes()[:HEADER_SIZE]
    assert struct.unpack_from("<I", head, 20)[0] == RULES_VERSION
    assert [s for s, _ in reader(tmp_path).under(RULES_VERSION).entries()] == [1, 2, 3]
    fill(tmp_path / "old", 3, rules=0)
    [(_, seg)] = list_segments(tmp_path / "old")
    with pytest.raises(JournalRulesError) as refused:
        list(reader(tmp_path / "old").under(RULES_VERSION).entries())
    message = str(refused.value)
    assert str(seg) in message and "no rules version (an older build)" in message
    assert f"rules version {RULES_VERSION}" in message


# -- sd_notify.py ---------------------------------------------------------------------------


def test_states_are_datagrams_and_without_a_socket_every_call_is_false(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sd_notify.py: "says READY, STOPPING and pets the watchdog with one datagram each to
    ``$NOTIFY_SOCKET``; elsewhere every call is a no-op that returns ``False``"; "a path, or an
    abstract name when it starts with ``@``"; ``status``: "A one-line status"; ``notify``:
    "``False`` when there is no socket (not under systemd) or it could not be reached. Never
    raises"."""
    said("sd_notify")
    assert sd_notify.ready() and sd_notify.stopping() and sd_notify.watchdog()
    assert sd_notify.status("a\nb")
    assert receive(listener) == ["READY=1", "STOPPING=1", "WATCHDOG=1", "STATUS=a b"]
    for address in ("", "vsock:2:9", "/nonexistent/notify"):
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert sd_notify.ready() is False, address
    monkeypatch.setattr(sd_notify, "os", SimpleNamespace(environ={"NOTIFY_SOCKET": "@x\0y"}))
    assert sd_notify.ready() is False


def test_watchdog_interval_is_half_and_only_for_its_own_pid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``watchdog_interval_s``: "half of ``$WATCHDOG_USEC`` in seconds, as systemd recommends;
    ``None`` when the watchdog is off, malformed, or meant for another process"."""
    said("sd_notify")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    for usec, want in (("3000000", 1.5), ("", None), ("0", None), ("x", None), ("9" * 400, None)):
        monkeypatch.setenv("WATCHDOG_USEC", usec)
        assert sd_notify.watchdog_interval_s() == want, usec
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sd_notify.watchdog_interval_s() == 1.0
    for pid in (str(os.getpid() + 1), "me"):
        monkeypatch.setenv("WATCHDOG_PID", pid)
        assert sd_notify.watchdog_interval_s() is None


def test_petting_sends_ready_once_and_pings_each_half_timeout(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``petting``: "petting the watchdog on a call when half its timeout has passed";
    "``ready_first``: the first call also sends READY=1"; "Returns ``fn`` itself when there is
    nothing to send"; ``watchdog_loop``: "Returns at once when the watchdog is off"."""
    said("sd_notify")

    def fn(x: int) -> int:
        return x + 1

    assert sd_notify.petting(fn) is fn
    asyncio.run(asyncio.wait_for(sd_notify.watchdog_loop(), 1.0))
    now = [0.0]
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")  # a ping every 2 s
    pet = sd_notify.petting(fn, ready_first=True, clock=lambda: now[0])
    assert pet(1) == 2 and receive(listener) == ["READY=1", "WATCHDOG=1"]
    now[0] = 1.9
    assert pet(1) == 2 and receive(listener) == []
    now[0] = 2.0
    pet(1)
    assert receive(listener) == ["WATCHDOG=1"]


# -- tls.py ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, two leaves it signed (named for no host a peer dials) and a rogue
    self-signed one."""
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=ringex-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
    for name in ("a", "b"):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}.elsewhere.example")  # fmt: skip
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2")  # fmt: skip
    openssl("req", "-x509", *ec, "-keyout", "r.key", "-out", "r.pem", "-days", "2",
            "-subj", "/CN=rogue")  # fmt: skip
    return d


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[str, str]:
    """A TLS handshake in memory: the server's and the client's error ("" for none)."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="primary.other-name.example")
    errors, done = {"s": "", "c": ""}, {"s": False, "c": False}
    for _ in range(10):
        for side, obj in (("c", client), ("s", server)):
            if not (done[side] or errors[side]):
                try:
                    obj.do_handshake()
                    done[side] = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
                except ssl.SSLError as exc:
                    errors[side] = str(exc)
            s_in.write(c_out.read())
            c_in.write(s_out.read())
    if done["c"] and not errors["s"] and not done["s"]:
        errors["s"] = "no end"
    return errors["s"], errors["c"]


def test_the_replication_link_takes_only_peers_of_its_ca_and_no_host_name(certs: Path) -> None:
    """tls.py: "the replication link (mutual: each side presents a certificate of the link's
    private CA)"; ``mutual_context``: "each presents ``cert``/``key`` and takes only a peer
    whose certificate ``ca`` signed. Neither checks the other's host name"; "None when none is
    set"; ``replication_context``: "the source's (``server``), or a standby's"."""
    said("tls")

    def side(name: str, *, server: bool, ca: str = "ca") -> ssl.SSLContext:
        rep = ReplicationConfig(
            tls_cert=str(certs / f"{name}.pem"), tls_key=str(certs / f"{name}.key"),
            tls_ca=str(certs / f"{ca}.pem"),
        )  # fmt: skip
        made = tls.replication_context(rep, server=server)
        assert made is not None
        return made

    assert tls.replication_context(ReplicationConfig(), server=True) is None
    source, standby = side("a", server=True), side("b", server=False)
    for made in (source, standby):
        assert made.verify_mode == ssl.CERT_REQUIRED and not made.check_hostname
        assert made.minimum_version == ssl.TLSVersion.TLSv1_2
    assert handshake(source, standby) == ("", "")
    rogue_standby = side("r", server=False)  # trusts the CA, presents a cert it did not sign
    assert "certificate verify failed" in handshake(source, rogue_standby)[0]
    assert "certificate verify failed" in handshake(side("r", server=True, ca="ca"), standby)[1]
    anonymous = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    anonymous.check_hostname = False  # verifies the source, presents nothing
    assert handshake(source, anonymous)[0]


def test_the_gateways_context_and_its_refusals_name_the_file(certs: Path) -> None:
    """``server_context``: "None when neither is set. TLS 1.2 at least"; ``TlsError``: "the
    message names the file"; ``tls_kwargs``: "none for plain TCP ... else the context and the
    handshake's and close's times"."""
    said("tls")
    assert tls.server_context("", "") is None and tls.tls_kwargs(None, 5.0) == {}
    context = tls.server_context(str(certs / "a.pem"), str(certs / "a.key"))
    assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2
    client = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    client.check_hostname = False
    assert handshake(context, client) == ("", "")
    assert tls.tls_kwargs(context, 3.0) == {
        "ssl": context, "ssl_handshake_timeout": 3.0, "ssl_shutdown_timeout": tls.SHUTDOWN_S,
    }  # fmt: skip
    missing = str(certs / "nope.pem")
    with pytest.raises(tls.TlsError, match=re.escape(missing)):
        tls.server_context(missing, str(certs / "a.key"))
    with pytest.raises(tls.TlsError, match=re.escape(str(certs / "a.pem"))):
        tls.server_context(str(certs / "a.pem"), str(certs / "b.key"))  # not its key
    with pytest.raises(tls.TlsError, match=re.escape(missing)):
        tls.mutual_context(str(certs / "a.pem"), str(certs / "a.key"), missing, server=True)


# -- endpoints.py ---------------------------------------------------------------------------


def cfg_with(host: str, **supervisor: Any) -> RingexConfig:
    """The default config, its gateway (FIX, and REST on 8080) on ``host``."""
    cfg = RingexConfig()
    gw = msgspec.structs.replace(cfg.gateways[0], host=host, rest=RestConfig(host=host, port=8080))
    sup = msgspec.structs.replace(cfg.supervisor, **supervisor)
    return msgspec.structs.replace(cfg, gateways=[gw], supervisor=sup)


def test_urls_bracket_ipv6_and_metrics_say_where_they_are(tmp_path: Path) -> None:
    """``url_host``: "an IPv6 literal in brackets (RFC 3986, 3.2.2)"; ``_metrics_url``: "the
    URL it reported while it runs (the port it was given when metrics_port = 0), else the
    configured one"; endpoints.py: "what is configured off says so"."""
    said("endpoints")
    assert ep.url_host("::1") == "[::1]" and ep.url_host("10.0.0.1") == "10.0.0.1"
    cfg = cfg_with("::1", metrics_host="::1", metrics_port=9100)
    name = cfg.gateways[0].name
    shown = ep.endpoints(cfg, {"state": "stopped"})
    assert shown[f"rest {name}"] == "http://[::1]:8080/api/v1/"
    assert shown["metrics"] == "http://[::1]:9100/metrics"
    running = {"state": "running", "metrics_url": "http://127.0.0.1:4242/metrics"}
    assert ep.endpoints(cfg, running)["metrics"] == "http://127.0.0.1:4242/metrics"
    free = cfg_with("127.0.0.1", metrics_port=0)
    assert ep.endpoints(free, {"state": "stopped"})["metrics"].endswith(
        ":<a free port, once running>/metrics"
    )
    off = cfg_with("127.0.0.1", metrics=False)
    assert ep.endpoints(off, {"state": "stopped"})["metrics"] == "off (supervisor.metrics = false)"


def test_the_fix_address_of_an_ipv6_host_is_bracketed() -> None:
    """endpoints.py: "each gateway's FIX and REST address"; config/fields.py: "(``"[::1]:9900"``,
    as RFC 3986 and ``ringex status`` write it)" (review 131: the FIX one was unbracketed)."""
    said("endpoints", "config.fields")
    cfg = cfg_with("::1")
    fix = ep.endpoints(cfg, {"state": "stopped"})[f"fix {cfg.gateways[0].name}"]
    assert fix.startswith(f"[::1]:{cfg.gateways[0].port} "), fix


def test_a_wildcard_host_is_shown_as_the_listen_address() -> None:
    """endpoints.py: "at their configured listen addresses (a wildcard, 0.0.0.0 or ::, stands
    for this host's: clients name it)" (review 131: it said where clients connect)."""
    said("endpoints")
    for host, shown_as in (("0.0.0.0", "0.0.0.0"), ("::", "[::]")):
        shown = ep.endpoints(cfg_with(host), {"state": "stopped"})
        assert shown_as in shown[f"rest {RingexConfig().gateways[0].name}"]
