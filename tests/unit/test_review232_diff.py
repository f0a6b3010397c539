"""Review 232: a hostile reread of today's changes to production code, part A (commits
f21975b, 7de312c, eb33e98: reviews 225, 229, 230).

Reviewed: ``procs/gateway/store.py`` (store version 3, a u64 seq; ``_convert_older``,
``_convert_v2``, ``_framed``, ``_entries``, ``_load``/``_index_entries``),
``procs/common/apikeys.py`` (``ApiKeyStore.get``) with ``procs/common/change_log.py``
(``LoggedSnapshot.moved``), ``config/edges.py`` (``FIX_FACE``, ``REST_FACE``, ``face``,
``check_alike``) with ``config/schema.py`` (``_check_listeners``), ``procs/common/users.py``
(``MAX_USER_ACCOUNT``, ``account_refused``, ``UserStore.add``) with
``procs/admin/add_user.py``, ``procs/gateway/session.py`` (``_close`` now tells
``on_disconnect``; ``connection_lost``, ``abort``) with ``orders.py`` (``on_disconnect``),
``connections.py`` and ``server.py`` (``_timers``, ``shutdown``: who publishes the cancels).

Faults (all five fixed: their tests say "Was (fixed)"):
1. ``procs/gateway/store.py:425`` with ``:199`` (``_convert_older``/``_load``): a version-2
   ``messages`` that a crash cut inside its header (``RXMS\\x02``, 5 to 7 bytes: what the
   v2 build took as a new file, ``MAGIC.startswith(head)``) is refused as damaged after the
   upgrade, so the session cannot log on until an operator removes the file. Fix: in
   ``_convert_older`` (and ``_load``'s header test) take a prefix of ``_V2_MAGIC`` like a
   prefix of ``MAGIC``: ``head == MAGIC or not any(head) or MAGIC.startswith(head) or
   _V2_MAGIC.startswith(head)`` -> treated as empty (``_load`` then writes ``MAGIC``).
2. ``procs/gateway/store.py:193-196`` and ``:212-229`` (``_load``/``_index_entries``): the
   damaged-header check runs one way only. A version-2 file whose version byte flipped 2->3
   (one bit, the damage ``_convert_v2`` refuses the other way) is indexed as version 3:
   every CRC still holds, each seq reads as the u32 seq plus ``8=FI`` as its high word, so
   ``next_out`` becomes ~5.3e18 and ``outbound`` finds nothing: the session's numbers jump
   and every stored message is lost to resends, silently. Fix: in ``_index_entries`` check
   that an entry's raw (``buf[at + _ENTRY.size:]``) opens with ``b"8=FIX"`` (one slice
   compare per entry), else return "is damaged: its entries are not version 3's".
3. ``config/schema.py:518-521`` (``_check_listeners``): ``check_alike`` runs for every
   clash of one shared kind, also a wildcard listener (``0.0.0.0``) against an address's own
   (``127.0.0.1``). The kernel never hands those one client at random: an address's own
   reuse_port listener takes all of its connections (the comp_id check at :523-525 says
   so, and a plain test below shows it). A public TLS gateway on ``0.0.0.0`` beside a
   plain one for local clients on ``127.0.0.1`` (loaded before 7de312c) is refused, its
   message saying "the kernel hands each client connection to either". Fix: in ``listen``
   call ``check_alike`` only when ``h == host or (h in wildcard and host in wildcard)``, as
   the comp_id branch does.
4. ``procs/admin/add_user.py:35`` (the default account, max + 1) with ``:57``: once a user
   holds the largest account (2**53-1, allowed), every ``add-user`` without ``--account``
   is refused with "account 9007199254740992 is outside 1..9007199254740991", a number the
   operator never gave, not saying to pass ``--account`` (README: "its account the next
   free one unless --account says"). Fix: when not ``chosen`` and max + 1 passes
   ``MAX_USER_ACCOUNT``, take the lowest free account from 100 up, or refuse saying "no
   account above N is free: pass --account".
5. ``procs/admin/add_user.py:119-134`` (``open_account``) and ``:102-115`` (``_stored``): a
   default account checked against the cap at :57 is then walked upward past existing
   accounts unchecked: with 2**53-1 opened already (``create-account``), 2**53 is opened in
   the router, then ``UserStore.add`` raises ValueError, which neither ``_stored`` nor
   ``add_user`` catches: the command dies with a traceback, an account past the cap left
   open. Fix: in ``open_account`` stop the walk at ``MAX_USER_ACCOUNT`` (refuse, saying so),
   and in ``_stored`` catch ``ValueError`` as the refusal it is.

Found sound (plain tests): an empty version-2 file becomes version 3; a conversion cut by a
crash (``messages.new`` left, ``messages`` still version 2) is done again at the next open;
a reset right after a conversion keeps version 3 and u64 seqs past 2**32; a version-2
``carried`` is parked again under new numbers; ``ApiKeyStore.get`` refuses a key revoked
by another store at once also across a compaction (the held log replaced) and when no log
existed yet, with its periodic look pushed to an hour; two gateways alike but for TLS files
at different paths share a port; ``UserStore.add`` takes 2**53-1 and refuses 2**53, naming
the cap; a Logout tells ``on_disconnect`` once, before the socket's end, and a store failure
before the logon completes (``abort``) tells it nothing; a gateway's shutdown publishes the
cancels its sessions' Logouts made (``server.py`` ``shutdown`` ends with ``publish``, and
review 230 runs it end to end: not repeated here).
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path

import pytest

from config.loader import load_profile
from config.schema import RingexConfig
from procs.common.apikeys import ApiKeyStore
from procs.common.crc_frames import frame
from procs.common.topology import users_path
from procs.common.users import MAX_USER_ACCOUNT, UserStore
from procs.gateway.session_interface import State
from procs.gateway.store import MAGIC, MessageStore, MessageStoreError
from tests.unit.gateway.test_review_fix_session_bugs import logged_on, make, msg, replies
from tests.unit.test_review127_tools_docstrings2 import _add_user, _Client
from tests.unit.test_review138_feed_and_files_fuzz2 import MESSAGES, _reopened

V2 = b"RXMS\x02\x00\x00\x00"


def v2_entries(messages: list[tuple[int, bytes]]) -> bytes:
    """Version 2's entries: a frame of ``u32 seq | raw`` each."""
    return b"".join(frame(struct.pack("<I", seq) + raw) for seq, raw in messages)


def v3_entries(messages: list[tuple[int, bytes]]) -> bytes:
    return b"".join(frame(struct.pack("<Q", seq) + raw) for seq, raw in messages)


# -- the session store: version 3 and the conversion of version 2 ---------------------------


@pytest.mark.parametrize("cut", [5, 6, 7])
def test_a_version_2_file_cut_inside_its_header_starts_anew(tmp_path: Path, cut: int) -> None:
    """Scenario: the version-2 build crashed while writing a new session's ``messages``
    header, leaving ``RXMS\\x02`` (5 to 7 bytes); the gateway is upgraded and the client logs on.
    Expected: the file taken as a new one, as version 2 took it and as version 3 takes
    ``MAGIC[:5]`` (test_damaged_files): no message, next out 1, the header version 3's.
    Was (fixed): MessageStoreError "its header b'RXMS\\x02' is not ...": the logon fails until an
    operator removes the file."""
    (tmp_path / "messages").write_bytes(V2[:cut])
    assert _reopened(tmp_path) == ([], 1)
    assert (tmp_path / "messages").read_bytes() == MAGIC


def test_a_version_2_file_whose_version_byte_flipped_to_3_is_refused(tmp_path: Path) -> None:
    """Scenario: a version-2 ``messages`` (four stored messages, seqs 1-4) whose version byte
    took one flipped bit, 2 -> 3, before the upgrade opens it.
    Expected: refused as damaged (MessageStoreError naming the file), as a version-3 file
    flipped to 2 is (``_convert_v2``).
    Was (fixed): loaded as version 3: each CRC holds, each seq reads with ``8=FI`` as its high word,
    next out becomes ~5.3e18 and a resend of 1-4 finds nothing."""
    (tmp_path / "messages").write_bytes(MAGIC + v2_entries(MESSAGES))
    try:
        store = MessageStore(tmp_path)
    except MessageStoreError as exc:
        assert str(tmp_path / "messages") in str(exc)
        return
    next_out, resent = store.next_out, store.outbound(1, 4)
    store.close()
    assert (next_out, resent) == (5, MESSAGES), "loaded, not refused"


def test_an_empty_version_2_file_becomes_version_3(tmp_path: Path) -> None:
    """Scenario: a version-2 ``messages`` holding its header alone (a session reset last).
    Expected: rewritten as version 3's header, nothing stored, next out 1.
    Now: so."""
    (tmp_path / "messages").write_bytes(V2)
    assert _reopened(tmp_path) == ([], 1)
    assert (tmp_path / "messages").read_bytes() == MAGIC


def test_a_conversion_a_crash_cut_is_done_again(tmp_path: Path) -> None:
    """Scenario: a crash during the conversion: ``messages.new`` half written, ``messages``
    still version 2.
    Expected: the next open converts again, every message kept, the leftover replaced.
    Now: so."""
    (tmp_path / "messages").write_bytes(V2 + v2_entries(MESSAGES))
    (tmp_path / "messages.new").write_bytes(MAGIC + b"\x40\x00")
    assert _reopened(tmp_path) == (MESSAGES, 4)
    assert (tmp_path / "messages").read_bytes() == MAGIC + v3_entries(MESSAGES)
    assert not (tmp_path / "messages.new").exists()


def test_a_reset_right_after_a_conversion_keeps_version_3(tmp_path: Path) -> None:
    """Scenario: a version-2 file converted at the open, then a reset, then a message at a
    seq past 2**32.
    Expected: the header stays version 3's and the seq is kept whole across a reopen.
    Now: so."""
    (tmp_path / "messages").write_bytes(V2 + v2_entries(MESSAGES))
    store = MessageStore(tmp_path)
    store.reset()
    raw = MESSAGES[0][1]
    store.add_outbound(2**32 + 5, raw)
    store.close()
    assert (tmp_path / "messages").read_bytes() == MAGIC + v3_entries([(2**32 + 5, raw)])
    store = MessageStore(tmp_path)
    try:
        assert store.next_out == 2**32 + 6
        assert store.outbound(2**32 + 5, 2**32 + 5) == [(2**32 + 5, raw)]
    finally:
        store.close()


def test_a_version_2_carried_file_is_parked_again(tmp_path: Path) -> None:
    """Scenario: a version-2 build crashed mid-reset: ``messages`` truncated to its header,
    ``carried`` (version 2) holding a parked execution report; the upgrade opens them.
    Expected: the carried report parked again under a new number, ``carried`` gone.
    Now: so."""
    report = (
        b"8=FIX.4.4\x019=60\x0135=8\x0149=RINGEX\x0156=ALICE\x0134=7\x01"
        b"52=20250101-00:00:00.000\x0111=c1\x0139=0\x0110=000\x01"
    )
    (tmp_path / "messages").write_bytes(V2)
    (tmp_path / "carried").write_bytes(V2 + v2_entries([(7, report)]))
    store = MessageStore(tmp_path)
    try:
        assert not (tmp_path / "carried").exists()
        assert store.parked_from == 1
        assert store.unsent() == [(b"8", b"11=c1\x0139=0\x01")]
    finally:
        store.close()


# -- API keys: a revocation elsewhere refused at once ---------------------------------------


def test_a_key_revoked_elsewhere_is_refused_at_once_across_a_compaction(tmp_path: Path) -> None:
    """Scenario: gateway B's key store (its periodic look an hour away) and gateway A's on
    one file; no log yet when B opens; A makes two keys, B verifies them; A compacts (the
    log B holds replaced), then revokes one; then revokes the other.
    Expected: each revocation refused at B on its next ``get``.
    Now: so (``moved``: the log appears, grows, or is unlinked)."""
    user = UserStore(tmp_path / "users.json").add("ALICE", "pw", 7, n=16)
    path = tmp_path / "apikeys.json"
    a = ApiKeyStore(path)
    b = ApiKeyStore(path, recheck_s=3600)
    k1, k2 = (a.create(user, ["read", "trade"]).key for _ in range(2))
    assert b.get(k1) is not None and b.get(k2) is not None
    a.compact()
    assert a.revoke(k1)
    assert b.get(k1) is None and b.get(k2) is not None
    assert a.revoke(k2)
    assert b.get(k2) is None


# -- gateways sharing a port ----------------------------------------------------------------


def profile(tmp_path: Path, hosts: tuple[str, str], second: str) -> Path:
    """Two gateways on one FIX port (``reuse_port``, one comp_id) at ``hosts``; the first
    with TLS, the second given the TOML lines ``second``."""
    for name in ("a.pem", "a.key", "b.pem", "b.key"):
        (tmp_path / name).write_text("")
    tls = f'tls_cert = "{tmp_path / "a.pem"}"\ntls_key = "{tmp_path / "a.key"}"\n'
    text = f'instance = "r232"\nvar_dir = "{tmp_path / "var"}"\n'
    for name, gid, host, extra in (("pub", 1, hosts[0], tls), ("local", 2, hosts[1], second)):
        text += (
            f'[[gateways]]\nname = "{name}"\nid = {gid}\nhost = "{host}"\nport = 19232\n'
            f"reuse_port = true\n{extra}\n"
        )
    path = tmp_path / "p.toml"
    path.write_text(text)
    return path


def test_a_wildcard_gateway_and_an_addresses_own_need_not_agree(tmp_path: Path) -> None:
    """Scenario: a public gateway with TLS on 0.0.0.0:19232 and one without TLS for local
    clients on 127.0.0.1:19232, both ``reuse_port``, one comp_id.
    Expected: the profile loads: the kernel gives every connection to 127.0.0.1 to the
    latter and every other to the former (the test below), never one at random.
    Was (fixed): refused, "differ in tls (False and True): the kernel hands each client connection
    to either"."""
    cfg = load_profile(str(profile(tmp_path, ("0.0.0.0", "127.0.0.1"), "")))
    assert [bool(g.tls_cert) for g in cfg.gateways] == [True, False]


def test_an_addresses_own_reuse_port_listener_takes_all_its_connections() -> None:
    """Scenario: two SO_REUSEPORT listeners on one port, one on 0.0.0.0, one on 127.0.0.1;
    20 connections to 127.0.0.1, 20 to 127.0.0.2.
    Expected: the former all at the 127.0.0.1 listener, the latter all at the wildcard.
    Now: so (the premise of fault 3)."""

    def listener(host: str, port: int) -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((host, port))
        s.listen(64)
        s.setblocking(False)
        return s

    wild = listener("0.0.0.0", 0)
    port = wild.getsockname()[1]
    own = listener("127.0.0.1", port)
    clients = [socket.create_connection((h, port)) for h in ["127.0.0.1"] * 20 + ["127.0.0.2"] * 20]

    def accepted(s: socket.socket) -> int:
        n, deadline = 0, time.monotonic() + 5
        while n < 20 and time.monotonic() < deadline:
            try:
                conn, _ = s.accept()
            except BlockingIOError:
                time.sleep(0.01)  # a poll with a deadline: the backlog fills at connect
                continue
            conn.close()
            n += 1
        return n

    try:
        assert (accepted(own), accepted(wild)) == (20, 20)
    finally:
        for s in [*clients, wild, own]:
            s.close()


def test_gateways_alike_but_for_their_tls_files_share_a_port(tmp_path: Path) -> None:
    """Scenario: two gateways on 0.0.0.0:19232, both with TLS, their PEM files at other paths.
    Expected: loaded (TLS compared on or off: two processes may hold two copies).
    Now: so."""
    second = f'tls_cert = "{tmp_path / "b.pem"}"\ntls_key = "{tmp_path / "b.key"}"\n'
    cfg = load_profile(str(profile(tmp_path, ("0.0.0.0", "0.0.0.0"), second)))
    assert [g.tls_cert != "" for g in cfg.gateways] == [True, True]


# -- account ids capped at 2**53-1 ----------------------------------------------------------


def test_a_user_store_takes_the_largest_account_and_refuses_past_it(tmp_path: Path) -> None:
    """Scenario: ``UserStore.add`` with account 2**53-1, then 2**53.
    Expected: the first stored, the second refused naming the cap.
    Now: so."""
    store = UserStore(tmp_path / "users.json")
    assert store.add("TOP", "pw", MAX_USER_ACCOUNT, n=16).account == 2**53 - 1
    with pytest.raises(ValueError, match=r"outside 1\.\.9007199254740991"):
        store.add("PAST", "pw", 2**53, n=16)


def test_add_user_without_an_account_after_one_at_the_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: a user holds account 2**53-1 (allowed); ``add-user`` without ``--account``.
    Expected: a free account within the cap, or a refusal that says to pass ``--account``.
    Was (fixed): exit 2, "account 9007199254740992 is outside 1..9007199254740991": a number the
    operator never gave, and no word of ``--account``."""
    cfg = RingexConfig(var_dir=str(tmp_path))
    UserStore(users_path(cfg)).add("bob", "pw", MAX_USER_ACCOUNT, n=16)
    client = _Client(cfg)
    code = _add_user(cfg, client)
    err = capsys.readouterr().err
    assert code == 0 or "--account" in err, (code, err)


def test_add_user_never_opens_a_default_account_past_the_cap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Scenario: the highest user's account is 2**53-2 and account 2**53-1 is open already
    (``create-account``); ``add-user`` without ``--account``.
    Expected: refused (exit 1, said), no account past 2**53-1 opened.
    Was (fixed): 2**53 opened in the router, then ``UserStore.add`` raises ValueError out of
    ``add_user``: a traceback, an account past the cap left open and empty."""
    cfg = RingexConfig(var_dir=str(tmp_path))
    UserStore(users_path(cfg)).add("bob", "pw", MAX_USER_ACCOUNT - 1, n=16)
    client = _Client(cfg, exists=[MAX_USER_ACCOUNT])
    code: int | str
    try:
        code = _add_user(cfg, client)
    except ValueError as exc:
        code = f"raised {exc}"
    assert code == 1  # as any account add-user could not open (said: give --account)
    assert ("open", 2**53) not in client.calls
    assert "give a free one with --account" in capsys.readouterr().err
    assert "alice" not in [u.comp_id for u in UserStore(users_path(cfg)).users()]
    capsys.readouterr()


# -- cancel on disconnect told at the session's end -----------------------------------------


def test_a_logout_tells_the_application_once_before_the_socket_ends(tmp_path: Path) -> None:
    """Scenario: a logged-on session sends a Logout, then its socket ends.
    Expected: ``on_disconnect`` at the Logout (the session closed, not yet its socket), and
    not again at ``connection_lost``.
    Now: so."""
    now = time.time_ns()
    s, app = logged_on(tmp_path, now)
    s.data_received(msg("5", 2, now_ns=now), now)
    assert [m.msg_type for m in replies(s)] == [b"5"] and s.state is State.CLOSED
    assert app.disconnects == 1
    s.connection_lost(now)
    assert app.disconnects == 1


def test_a_store_failure_before_the_logon_completes_tells_nothing(tmp_path: Path) -> None:
    """Scenario: a Logon whose session store cannot be opened (OSError: out of
    descriptors), then the shell's ``abort`` and the socket's end.
    Expected: the session closed, ``on_disconnect`` never called (it never logged on), so
    another session's orders are not cancelled for it.
    Now: so."""
    now = time.time_ns()
    s, app = make(tmp_path, now)

    def broken(comp_id: str) -> MessageStore:
        raise OSError(24, "Too many open files")

    s.stores = broken
    with pytest.raises(OSError):
        s.data_received(msg("A", 1, (98, 0), (108, 30), (554, "pw"), now_ns=now), now)
    s.abort("the logon failed: Too many open files")
    s.connection_lost(now)
    assert s.state is State.CLOSED and app.disconnects == 0
    assert s.live == {}
