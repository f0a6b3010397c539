"""A second hostile reread of today's fix commits (827b832..db3e99f): the whole FIX 4.4
dictionary from QuickFIX's ``FIX44.xml`` (``dictionary.py`` with ``fix44.json``, the data
fields refused, ``UNSUPPORTED_ORDER_FIELDS`` with OnBehalfOf/DeliverTo, 373=0 against 3),
the ResendRequest sent again after a heartbeat interval, the refusal notes, the matcher's
stop-market refused on arrival by the book it would meet, promote's fee check on the
recovered standby, failover status's source start time, the config checks (``reuse_port``
gateways of one ``comp_id``, ``Units``, bracketed IPv6) and ``scripts/systemd_units.py``
(``passed_environment``, ``chown_instance_dirs``, the metrics note).

Each test failed on those commits for the fault it names (its docstring: what the
README, FIX 4.4 or QuickFIX asks, what the code did and where, "Actual") and passes since
its fix (the same session's commits).

Checked and found sound, no test here: a stop-market the matcher refuses ``NO_LIQUIDITY``
has its reservation released by the router like any refused order (core rig: every balance
back, nothing open), and ``_dead_on_arrival`` bands it exactly as ``Book._take`` will (cap,
``band_bps = 0`` and the trigger of ``_trigger_stops`` included; both books agree); the
stop-limit collar around its stop; ``fees_refused``'s recovery reads only (``JournalReader``
without ``repair``, ``SnapshotStore.latest``; no lock is taken, a recovery that fails is left
to the standby's own start); failover status's start time (an int through JSON, compared
with ``process_start``); the ``reuse_port`` check of ``comp_id`` (three gateways, wildcards);
``Units`` (int64 as the records); ``host_and_port`` (what it lets through fails at connect,
named); the ResendRequest sent again while its answer comes in (refreshed by every message
in sequence; a SequenceReset in either mode closes or moves the gap); the PossDup repeat of
an order refused for a new field (its ClOrdID is taken: not acted on); no file under
``procs/`` over 600 lines; each new rule deterministic.

Rigs: the sans-I/O ``Session`` with hand-framed bytes (review 4's), here also in front of a
real ``OrderEntry`` (``_Wired``); ``OrderEntry`` driven by hand with a fake session (review
49's); both books through ``sweep_rig``; the systemd script's dry run (review 52's).
"""

from __future__ import annotations

import os
import pwd
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from config import load_profile
from procs.common.records import NewOrder, Rejected
from procs.common.result_codes import ResultCode
from procs.common.run_files import run_dir
from procs.common.users import UserStore
from procs.gateway.fix import FixMessage, FixReader
from procs.gateway.instruments import Instruments
from procs.gateway.orders import OrderEntry
from procs.gateway.session import Session
from procs.gateway.session_interface import SessionSettings, State
from procs.gateway.store import MessageStore
from tests.scripts_loader import load_script
from tests.unit.gateway.test_review4_fix_bugs import (  # its fixture closes the stores
    App,
    _close_stores,  # noqa: F401
    msg,
    replies,
    session,
    stamp,
)
from tests.unit.matcher.sweep_rig import BUY, SELL, SPEC, STOP, Feed
from tests.unit.matcher.sweep_rig import run as sweep
from tests.unit.test_review47_reread import ACCOUNT, GATEWAY, SESSION, SYM, _fix
from tests.unit.test_review49_reread import _wired
from tests.unit.test_review52_ops_surfaces import dry_run, unit_profile

units = load_script("systemd_units", "review51r2")

_S = 1_000_000_000


@pytest.fixture
def stores() -> Iterator[list[MessageStore]]:
    opened: list[MessageStore] = []
    yield opened
    for store in opened:
        store.close()


def _fresh_session(tmp_path: Path, stores: list[MessageStore], now: int) -> Session:
    """ALICE's session (account 7) awaiting its Logon, before a recording ``App``."""
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "pw", 7, n=1 << 4)
    by_comp: dict[str, MessageStore] = {}

    def store(comp: str) -> MessageStore:
        if comp not in by_comp:
            by_comp[comp] = MessageStore(tmp_path / "sessions" / comp)
            stores.append(by_comp[comp])
        return by_comp[comp]

    return Session(SessionSettings(comp_id="RINGEX"), users, store, App(), {}, now)


def _wired_session(
    tmp_path: Path, stores: list[MessageStore], now: int
) -> tuple[Session, OrderEntry]:
    """ALICE logged on (seq 1 each way) through a real ``Session`` in front of a real
    ``OrderEntry`` (BTC-USD, two decimals each): what a client's bytes become, validation
    and order entry together; ``entry.outgoing`` holds what would go to the router."""
    s = _fresh_session(tmp_path, stores, now)
    entry = OrderEntry(GATEWAY, Instruments([SYM]), cancel_on_disconnect=False)
    s.app = entry
    s.data_received(msg("A", 1, (98, 0), (108, 30), (554, "pw"), now_ns=now), now)
    assert [m.msg_type for m in replies(s)] == [b"A"] and s.state is State.ACTIVE
    return s, entry


# -- the FIX 4.4 dictionary (dictionary.py, orders.py) ----------------------------------------


def test_a_mass_cancel_on_behalf_of_another_firm_does_not_cancel_the_senders_orders(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """FIX 4.4 Vol 2 (standard header): OnBehalfOfCompID (115) names "the firm originating
    the message if the message was delivered by a third party"; the SenderCompID is the
    third party's. README (gateway): "OnBehalfOfCompID 115, DeliverToCompID 128 and their
    sub and location ids refuse an order, OrdRejReason 11, as ringex routes for no third
    party" (commit e0945ef, after review 51's reread found such a D booked as the sender's).

    ``dictionary.HEADER`` takes every header field of ``FIX44.xml`` for every message type
    (before 827b832, 115 was a session Reject 373=3), but the refusal is wired into the D
    and G paths only (``OrderEntry._new`` and ``order_fields.replace_fault`` call
    ``unsupported_field``); ``OrderEntry._mass_cancel`` (procs/gateway/orders.py) never
    looks at the header. A hub (ALICE) sends OrderMassCancelRequest 530=7 with
    115=CLIENTA: "cancel all of CLIENTA's orders". Order entry sends the router a
    ``MassCancel`` of ALICE's own account, symbol 0: every order of the hub's account, all
    its other clients' included, is cancelled in place of none. (F, H and AF with 115 are
    likewise answered from, and act on, the sender's own orders.)

    Expected: refused (an OrderMassCancelReport 531=0 naming OnBehalfOfCompID, as a D is
    refused). Actual: ``MassCancel(account=7, symbol=0)`` sent to the router."""
    now = time.time_ns()
    s, entry = _wired_session(tmp_path, stores, now)
    s.data_received(
        msg("q", 2, (11, "mc1"), (530, 7), (60, stamp(now)), now_ns=now, header="115=CLIENTA|"),
        now,
    )
    answers = replies(s)
    assert entry.outgoing == [], (
        f"a mass cancel for CLIENTA became one of the sender's account: {entry.outgoing} "
        f"(answers {[m.msg_type for m in answers]})"
    )


def test_an_order_for_an_option_on_a_symbol_is_not_booked_on_the_spot_symbol(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """FIX 4.4 Vol 1 (the Instrument component): an instrument is named by the component
    as a whole; SecurityType (167) OPT with PutOrCall (201), StrikePrice (202) and
    MaturityMonthYear (200) names an option on the underlying Symbol (55), another
    instrument than the symbol itself. README (gateway): an order field "that changes how it
    executes and that ringex does not act on ... refuses the order, OrdRejReason 11 ...,
    and one that only describes, such as SecurityType 167 or Currency 15, is taken and
    ignored"; ``order_fields.unsupported_field``: "a client that sent one expects it kept".

    ``dictionary._DESCRIPTIVE`` (procs/gateway/dictionary.py) counts 200, 201, 202, 541
    (MaturityDate), 206 (OptAttribute), 231 (ContractMultiplier) and 167 as describing only,
    so ``UNSUPPORTED_ORDER_FIELDS`` leaves them out and ``OrderEntry._new`` books the order
    on BTC-USD spot (before 827b832 each was a session Reject). Here ALICE sells one
    BTC-USD 60000 call, December 2026, at its premium 15.00: the exchange books a limit
    sell of 1 BTC at 15.00, which takes every bid down to its price (sells real BTC at a
    fraction of its value: the band is from the best bid).

    Expected: refused (OrdRejReason 11 naming the field, or 1, unknown symbol). Actual: a
    ``NewOrder`` sell of 1.00 BTC-USD at 15.00."""
    now = time.time_ns()
    s, entry = _wired_session(tmp_path, stores, now)
    option = ((167, "OPT"), (201, 1), (202, "60000"), (200, "202612"))
    s.data_received(
        msg("D", 2, (11, "call1"), (55, "BTC-USD"), (54, 2), (60, stamp(now)), (38, "1"),
            (40, 2), (44, "15.00"), (59, 1), *option, now_ns=now),
        now,
    )  # fmt: skip
    answers = replies(s)
    booked = [r for r in entry.outgoing if isinstance(r, NewOrder)]
    assert booked == [], (
        f"an option order booked as spot BTC-USD: {booked} "
        f"(answers {[(m.msg_type, m.get(150)) for m in answers]})"
    )


def test_a_logon_with_the_no_msg_types_group_fix44_defines_for_it_logs_on(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """FIX 4.4 Vol 2 (Logon) and QuickFIX's ``FIX44.xml``: the Logon defines the optional
    repeating group NoMsgTypes (384) of RefMsgType (372) and MsgDirection (385), by which an
    engine lists the message types it sends and receives; a QuickFIX acceptor validating
    with ``FIX44.xml`` takes it. Commit 827b832: "a message a firm's engine builds by the
    specification is not refused for a field the specification allows"; README (gateway):
    "a field the specification defines for a message is never a session Reject".

    ``scripts/fix44_dictionary.py`` flattens each message "outside repeating groups", and
    ``dictionary._by_the_spec`` (procs/gateway/dictionary.py) adds only those fields, so 384
    is not allowed on a Logon; ``Session._logon`` (``logon.before_password``: "invalid
    Logon") answers a Logon that does not validate with a Logout and closes. An engine
    that sends NoMsgTypes never logs on, told "tag 384 (NoMsgTypes) is not defined for
    Logon", which FIX 4.4 contradicts. (README: "repeating groups other than Parties are
    not taken": on a Logon that is no session at all.)

    Expected: logged on (35=A answered; the group taken and ignored, as it says nothing
    ringex needs). Actual: Logout "invalid Logon: tag 384 (NoMsgTypes) is not defined for
    Logon", session closed."""
    now = time.time_ns()
    s = _fresh_session(tmp_path, stores, now)
    group = ((384, 2), (372, "D"), (385, "S"), (372, "8"), (385, "R"))
    s.data_received(msg("A", 1, (98, 0), (108, 30), *group, (554, "pw"), now_ns=now), now)
    answers = replies(s)
    assert [m.msg_type for m in answers] == [b"A"], [(m.msg_type, m.get(58)) for m in answers]
    assert s.state is State.ACTIVE


def test_a_logon_that_says_it_is_a_test_session_is_not_taken_as_production(
    tmp_path: Path, stores: list[MessageStore]
) -> None:
    """FIX 4.4 (field 464): TestMessageIndicator "indicates whether or not this FIX Session
    is a 'test' vs. 'production' connection. Useful for preventing 'accidents'"; it is a
    field of the Logon in ``FIX44.xml``. README (gateway): an order field ringex does not
    act on is refused, not ignored, because a client that sent it expects it kept.

    Before 827b832 a Logon with 464 was refused (an undefined tag). ``dictionary._by_the_
    spec`` now adds 464 to the Logon's optional fields, and nothing reads it
    (``logon.before_password`` / ``after_password`` check CompIDs, password, HeartBtInt,
    ResetSeqNumFlag): a client whose configuration says "test" (464=Y, pointed by mistake
    at the production gateway) is logged on and its orders trade real balances, the very
    accident the field exists to prevent.

    Expected: the Logon refused (a Logout saying this is a production gateway). Actual:
    35=A, the session active."""
    now = time.time_ns()
    s = _fresh_session(tmp_path, stores, now)
    s.data_received(msg("A", 1, (98, 0), (108, 30), (464, "Y"), (554, "pw"), now_ns=now), now)
    answers = replies(s)
    assert s.state is not State.ACTIVE, [(m.msg_type, m.get(58)) for m in answers]


# -- the ResendRequest sent again (session.py, gap_recovery.py) --------------------------------


def test_a_resend_request_waiting_behind_a_resend_is_not_sent_again(tmp_path: Path) -> None:
    """README (gateway): "a ResendRequest of the gateway's whose answer has not moved the
    gap on for a heartbeat interval is sent again"; FIX 4.4 Vol 2 and QuickFIX send one
    ResendRequest for a gap (``test_a_burst_past_a_gap_asks_for_the_resend_once``): each
    one makes the client resend everything from its BeginSeqNo.

    ``GapRecovery._request_resend`` (procs/gateway/gap_recovery.py) stamps ``_resend_at``
    when the request is *made*, and ``Session._active`` (procs/gateway/session.py) calls it
    stale a heartbeat interval later; but while the answer to the client's own
    ResendRequest is going out (``resending``: read from the store as the socket takes it,
    for a reconnecting client megabytes), ``Session._emit`` puts the request in ``_behind``,
    unwritten. The client cannot answer what it has not read, so every heartbeat interval
    of messages past the gap queues another: here three requests for 3..0 reach the wire
    together once the resend is out, and the client resends its whole gap three times
    (each copy counted against ``max_inbound_per_s``).

    Expected: one ResendRequest (not stale before it was written). Actual: three."""
    t0 = time.time_ns()
    s, _ = session(tmp_path, t0)  # HeartBtInt 30
    report = b"37=1\x0111=x\x0117=e\x01150=0\x0139=0\x0155=BTC-USD\x0154=1\x01151=1\x0114=0\x01"
    for _ in range(2_000):  # the history a reconnecting client asks for
        s.send(b"8", report + b"6=0\x0158=" + b"p" * 200 + b"\x01", t0)
    replies(s)
    s.data_received(msg("2", 2, (7, 2), (16, 0), now_ns=t0), t0)
    out = s.take_output(budget=1_000, now_ns=t0)  # a slow reader: a chunk a pass
    s.data_received(msg("0", 4, now_ns=t0), t0)  # 3 was garbled: past the gap
    out += s.take_output(budget=1_000, now_ns=t0)
    for k in (1, 2):  # a heartbeat interval later, and another
        at = t0 + k * 31 * _S
        s.data_received(msg("0", 4 + k, now_ns=at), at)
        out += s.take_output(budget=1_000, now_ns=at)
        assert s.resending
    out += s.take_output(now_ns=t0 + 63 * _S)
    reader = FixReader(1 << 26)
    reader.feed(b"".join(out))
    frames = [m for m in reader.messages() if isinstance(m, FixMessage)]
    asked = [(m.get(34), m.get(7)) for m in frames if m.msg_type == b"2"]
    assert len(asked) == 1, f"{len(asked)} ResendRequests for one gap, none written: {asked}"


# -- refusal notes (order_fields.py, rest_params.py) -------------------------------------------


def test_a_stop_market_refused_by_its_own_price_cap_is_not_told_the_market_passed_its_band() -> (
    None
):
    """README (the matcher): a stop-market that triggers on arrival "is refused where that
    band, and its cap, keep it from the best opposite price, ``PRICE_OUT_OF_BAND``";
    ``amounts`` (procs/gateway/order_fields.py) takes a stop-market's Price (44) as "a
    market order's worst price", the REST API its ``price`` likewise.

    ``OrderChecks._dead_on_arrival`` (procs/core/order_checks.py) refuses when the best
    opposite price is past ``min(protection, cap)``; ``refusal_note`` adds
    ``OUT_OF_BAND_NOTES[STOP]`` whatever bound it: ": the best opposite price is past its
    stop price by more than band_bps: banded from its stop, it could not trade"
    (``rest_params.refusal`` says the same with bandBps). A buy stop at 100 with Price 101,
    band 5% (105), last trade 100, best ask 102: refused for its own cap of 101, the best
    ask 2% from its stop. The client is told the market ran more than 5% past its stop,
    which is false, and not that raising its Price would let it trade.

    Expected: the note names the order's price (44) when it has one. Actual: the band
    note alone."""
    f = Feed(SPEC.symbol)  # band_bps 500
    out, _ = sweep(
        SPEC,
        [
            f.new(1, SELL, 100, 1, account=1),
            f.new(2, BUY, 100, 1, account=2),  # last trade 100
            f.new(3, SELL, 102, 5, account=3),  # the best ask: 2% from the stop
            f.new(4, BUY, 101, 2, account=4, ord_type=STOP, stop=100),  # cap 101
        ],
    )
    assert [e.code for e in out[-1] if isinstance(e, Rejected)] == [ResultCode.PRICE_OUT_OF_BAND], (
        out[-1]
    )
    entry, _, fake = _wired()
    pairs = [(11, b"st"), (55, b"BTC-USD"), (54, b"1"), (60, b"20260101-00:00:00")]
    pairs += [(40, b"3"), (38, b"2.00"), (44, b"1.01"), (99, b"1.00"), (59, b"1")]
    entry.on_message(cast(Session, fake), _fix(b"D", pairs), 1)
    new = entry.outgoing.pop()
    assert isinstance(new, NewOrder) and (new.price, new.stop_price) == (101, 100), new
    entry.process(
        Rejected(
            *(0, 10**18, GATEWAY, SESSION, new.client_ref, ACCOUNT, SYM.id, 0),
            code=ResultCode.PRICE_OUT_OF_BAND,
        )
    )
    kind, report = fake.sent[-1]
    assert (kind, report[150]) == (b"8", b"8"), report
    assert b"(44)" in report[58], report[58]


# -- production with systemd (scripts/systemd_units.py) ----------------------------------------


def test_the_database_password_is_not_put_on_the_units_command_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """README (Production with systemd): "each unit gets the ``RINGEX_*`` variables ... and
    libpq's ``PG*`` set where ``start`` runs". libpq (Environment Variables): PGPASSWORD
    "is not recommended for security reasons, as some operating systems allow non-root
    users to see process environment variables via ps"; systemd.exec(5): "environment
    variables set for a unit are exposed to unprivileged clients via D-Bus IPC ... Use
    LoadCredential= ... to pass data to unit processes securely". ringex masks passwords
    where it writes them (the audit log's ``***``).

    ``passed_environment`` (scripts/systemd_units.py) turns every ``PG*`` variable into
    ``--setenv=NAME=VALUE`` on ``systemd-run``'s argv (``run_command``): the database
    password is in /proc/<pid>/cmdline of each ``systemd-run`` (any local user's ``ps``),
    in every unit's ``Environment=`` property (``systemctl show`` for any user), and
    printed by ``start --dry-run``, the line an operator pastes into a ticket.

    Expected: the value passed without being written out (``--setenv=PGPASSWORD`` takes it
    from the caller's environment; better a credential or a 0600 ``EnvironmentFile=``).
    Actual: ``--setenv=PGPASSWORD=<the password>`` on every unit's line."""
    secret = "s3cr3t-review51r2"
    monkeypatch.setenv("PGPASSWORD", secret)
    runs, out = dry_run(unit_profile(tmp_path, "r51pgpw"), capsys)
    assert runs
    shown = [arg for cmd in runs for arg in cmd if secret in arg]
    assert not shown and secret not in out, f"the password on the units' lines: {shown[:1]}"


@pytest.mark.skipif(os.geteuid() != 0, reason="start --uid is root's: chown needs root")
def test_start_with_uid_does_not_hand_over_files_a_symlink_in_var_names(
    tmp_path: Path, instance: str
) -> None:
    """README (Production with systemd): "`--uid ringex` runs the processes as that user
    (the rings, and what `start` made of `var/<instance>/`, are handed to it ...)".

    ``chown_instance_dirs`` (scripts/systemd_units.py) walks ``var/<instance>`` with
    ``rglob`` and, for each path whose ``path.stat()`` (which follows symlinks) is root's,
    calls ``os.chown(path, ...)`` (which follows symlinks too). After the first start the
    unit user owns ``var/<instance>``; it (or any process running as it: a compromised
    gateway) places ``var/<instance>/run/x -> /etc/shadow``, and the operator's next
    ``start --uid ringex``, run as root, makes ``/etc/shadow`` the unit user's: root for
    that user (CWE-59). A dangling link there (``path.stat()``: FileNotFoundError) makes
    ``start`` fail after creating the rings, no unit started.

    Here a root-owned file outside ``var/`` and a link to it in ``run/``. Expected: the
    file still root's (links skipped, ``lstat`` / ``follow_symlinks=False``). Actual: it is
    ``nobody``'s."""
    try:
        user = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody on this host")
    cfg = load_profile(str(unit_profile(tmp_path, instance)))
    outside = tmp_path / "etc"
    outside.mkdir()
    target = outside / "shadow"
    target.write_text("root's\n")
    run_dir(cfg).mkdir(parents=True)
    (run_dir(cfg) / "x").symlink_to(target)
    assert target.stat().st_uid == 0
    units.chown_instance_dirs(cfg, "nobody")
    assert run_dir(cfg).stat().st_uid == user.pw_uid  # what it is for: still done
    assert target.stat().st_uid == 0, "a file outside var/ handed to the unit user by a link"
