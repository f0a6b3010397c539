"""Review 343: the router's trust boundary: what a trading gateway's ring may carry.

Reviewed: ``procs/router/intake.py`` (``_take``: each ring's records to ``Sequencer.submit``,
the ring's id kept only as the reply's destination), ``procs/router/reread.py`` and
``procs/core/recovery.py`` (``identity``, ``JournaledTail``: what a restart reads again),
``procs/core/sequencer.py`` (``submit``, ``_mass_cancel``, ``_account``), ``procs/admin/client.py``
(the only sender of ``CreateAccount``, ``Transfer``, ``AdminCommand`` and an every-account
``MassCancel``), ``procs/gateway/orders.py`` and ``rest_orders.py`` (what a trading gateway
sends), against README (the router row; "Limits per account": "nor the operator's commands:
accounts, transfers, halts and the admin gateway's mass cancels"; "An operator's cancel-all
is never refused for the rate of the account it stops (a gateway's mass cancel draws on
that rate like any command)"; "Gateway 0 is `ringex admin`") and a sequencer's defence in
depth as LMAX's and exchange-core's put it: the source of a command is the ring (the
gateway) it came in on, and a gateway that parses untrusted client input (its bug, or a
gateway compromised) gets no operator's power.

Rig: review 187's (``test_review187_shell_hostile.Rig``): real rings for gateways 1, 2 and the
admin ring (gateway 0), a real journal in ``tmp_path``, a ``RouterShell`` and a
``MatcherShell`` stepped by hand; accounts opened and funded on the admin ring as
``ringex admin`` does it; a crash is review 187's ``crash_before_commit`` and ``kill``.
Every "hostile" record below is one a trading gateway's bug could publish: its codec takes
any field value in bounds.

Faults found:
1. The router takes a command's source from the record's ``gateway`` header, never from the
   ring it read it from, and never checks one against the other. (a) A ``MassCancel`` on
   ``gw1-cmd`` whose header says gateway 0 is the operator's kill switch to the router: it is
   never held to the account's command rate, however many come, against README's "a
   gateway's mass cancel draws on that rate like any command". (b) A command whose header
   names another gateway than its ring is looked up after a crash under the ring's id
   (``Reread``) but was journaled under the header's (``JournaledTail``): an IOC order
   journaled and routed before the crash is read again, not found, and sequenced and
   executed a second time: one client order, two fills, the money moved twice (review 187
   left this a lead).
   Cause: ``procs/core/sequencer.py:184`` (``cmd.gateway != ADMIN_GATEWAY``) and
   ``procs/router/intake.py:74-80`` (the ring's ``gateway`` goes to ``origins`` only);
   ``procs/core/recovery.py:71`` (identity by header) against ``procs/router/reread.py:48``
   (looked up by ring).
   Fix: in ``_take``, refuse (a ``Rejected``/``AccountReply`` with a new code naming the
   header's and the ring's gateway, nothing journaled, an error logged) or overwrite a
   sequenced command whose ``gateway`` differs from its ring's id; ``_mass_cancel``'s exemption
   then reads the ring.
   Fixed: ``procs/router/gateway_rings.py`` (``from_ring``, ``as_from``): the ring's gateway
   overwrites the header (logged) before the reread and the sequencer see the command, and
   ``Reread``'s look back does the same; was: a header of 0 on a trading ring skipped the
   rate, and a header of another gateway got an IOC executed twice after a crash.
2. The operator's commands are taken from a trading gateway's ring. No trading gateway ever
   sends ``CreateAccount``, ``Transfer``, ``AdminCommand`` or a ``MassCancel`` of account 0
   (every account: ``rest_orders.py:234`` refuses to build one), and README names accounts,
   transfers and halts "the operator's commands" and gateway 0 ``ringex admin``; yet the
   router sequences them from any ring. A FIX/REST gateway's bug, or a gateway taken over,
   can deposit money into any account (minted: every asset's total "changes only by
   deposits and withdrawals", and this one no operator made), open accounts, halt or resume
   a symbol, end the session, shut the matchers down, and cancel every account's orders
   (review 341 left the last a lead: a FIX user of a hand-made users file with account 0
   sends one through ``orders.py:421`` as it is; pinned here, at the router).
   Cause: ``procs/core/sequencer.py:117-129`` (``submit`` dispatches on the record's type
   alone) with ``procs/router/intake.py:76-78``.
   Fix: pass the ring's gateway to ``submit`` (or check in ``_take``) and refuse these on a
   ring other than ``ADMIN_GATEWAY``'s: ``AccountReply``/``Rejected`` with a new code
   (``NOT_PERMITTED``, naming the command and the gateway), an ``AdminCommand`` (which names
   no session) logged and dropped; none journaled, so replay is unchanged. The router's
   tests that fund accounts on gateway 1 (``test_router.fund``, review 187's ``accounts``)
   move to the admin ring.
   Fixed: ``procs/router/intake.py`` (``_take``) refuses them on any ring but the admin
   ring's before the sequencer sees them (``sequencer.operators_only``, ``not_permitted``):
   an account command or that mass cancel is answered ``NOT_PERMITTED`` on its own ring, an
   ``AdminCommand`` (it names no session) dropped, each logged, none journaled; the rigs
   that funded accounts on trading rings fund them on the admin ring, as ``ringex admin``
   does. Was: a deposit on ``gw1-cmd`` answered OK and credited; a HALT on it halted the
   symbol; a mass cancel of account 0 on it cancelled another account's resting order.

Sound (test_sound_*): a trading gateway's own mass cancels draw on the account's rate and
are refused ``ACCOUNT_RATE_LIMITED`` past it, while the admin ring's are never held back
(README); a refusal goes back on the ring the command came in on, whatever its header says,
never to the gateway the header names; a record that is no command on a trading ring is
logged and passed over and the next command is decided; a command whose header matches its
ring, journaled and routed before a crash, is not sequenced again after it (fault 1b's
control), and the restarted router's balances equal the live ones.

Leads not shown: the router cannot know which accounts may trade on which gateway (the
gateway authenticates; README claims nothing), so gw1 may place, cancel and mass cancel
any account's orders; a real venue would bind sessions to accounts at the sequencer too.
A command with a forged header has its matcher events (fills, ``OrderDone``) sent to the
header's gateway, whose sessions do not know them. An ``AdminCommand``'s identity is keyed
on ``ADMIN_GATEWAY`` whatever ring it came on (``recovery.py:68``), so one on a trading ring
would be sequenced twice after a crash (gone with fault 2's fix). ``WatchBalances`` from a
trading ring reads any account's balances (read-only, the gateway's own check). A refusal
whose reply a crash lost is refused again only where a later command of its own ring was
journaled (``reread.py``): with deposits on the admin ring alone, an order of gw1 refused
for balance in the step that journaled the admin's deposit funding it is, after a crash in
``_route``, decided again and accepted (an older gap: ``ringex admin`` always used that ring;
review 193's test adds a journaled command of gw1 after the order to keep its point).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from config.schema import RingexConfig, RiskConfig
from procs.common.records import (
    AccountReply,
    AdminCommand,
    CreateAccount,
    Heartbeat,
    MassCancel,
    NewOrder,
    Record,
    Rejected,
    Trade,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import ADMIN_GATEWAY
from procs.common.types import AdminAction, OrdType, Side, StpMode, TimeInForce
from tests.unit.router.test_review187_shell_hostile import Rig, crash_before_commit, small
from tests.unit.router.test_router import USD, order

pytestmark = pytest.mark.timeout(30)

ADMIN = ADMIN_GATEWAY
BUYER, SELLER, OTHER = 8, 9, 10  # BUYER and SELLER funded; OTHER opened empty


def rig_with(instance: str, tmp_path: Path, rate: int = 1_000_000) -> Rig:
    cfg: RingexConfig = small(instance, tmp_path, 64)
    cfg = msgspec.structs.replace(
        cfg, risk=RiskConfig(max_open_orders=50, max_commands_per_s=rate, fee_account=99)
    )
    return Rig(cfg)


@pytest.fixture
def rig(instance: str, tmp_path: Path) -> Iterator[Rig]:
    r = rig_with(instance, tmp_path)
    fund(r)
    yield r
    r.stop()


@pytest.fixture
def slow_rig(instance: str, tmp_path: Path) -> Iterator[Rig]:
    """A command rate of 2 a second per account."""
    r = rig_with(instance, tmp_path, rate=2)
    fund(r)
    yield r
    r.stop()


def fund(rig: Rig) -> None:
    """On the admin ring, as ``ringex admin`` does: BUYER with USD, SELLER with BTC, OTHER
    empty."""
    rig.send(
        ADMIN,
        CreateAccount(0, 0, ADMIN, 0, 1, BUYER),
        CreateAccount(0, 0, ADMIN, 0, 2, SELLER),
        CreateAccount(0, 0, ADMIN, 0, 3, OTHER),
        Transfer(0, 0, ADMIN, 0, 4, BUYER, USD, 10**9, 41),
        Transfer(0, 0, ADMIN, 0, 5, SELLER, 2, 10**6, 42),
    )
    rig.pump()
    replies = [r for r in rig.told[ADMIN] if type(r) is AccountReply]
    assert [r.code for r in replies] == [ResultCode.OK] * 5


def ioc_buy(ref: int, gateway: int) -> NewOrder:
    """BUYER's IOC buy of 0.01 at 100.00, its header naming ``gateway``."""
    return NewOrder(
        *(0, 0, gateway, 1, ref, BUYER, 1, 0),
        side=Side.BUY,
        ord_type=OrdType.LIMIT,
        tif=TimeInForce.IOC,
        flags=0,
        stp=StpMode.NONE,
        price=10_000,
        qty=1,
        stop_price=0,
        display_qty=0,
    )


def rest_ask(rig: Rig) -> None:
    """SELLER's ask of 0.10 at 100.00 on gateway 2, resting."""
    rig.send(2, order(900, SELLER, Side.SELL, 10_000, 10, gateway=2))
    rig.pump()
    assert rig.router.sequencer.accounts.balance(SELLER, 2)[0] == 10**6 - 1000


def verdicts(rig: Rig, gateway: int, refs: range) -> list[ResultCode]:
    return [r.code for r in rig.told[gateway] if type(r) is Rejected and r.client_ref in refs]


def journaled(rig: Rig, kind: type[Record]) -> list[Record]:
    return [c for c in rig.journaled() if type(c) is kind]


def trades_of(rig: Rig, ref: int) -> int:
    """Trades whose taker is the order the client sent as ``ref``."""
    ids = {c.order_id for c in journaled(rig, NewOrder) if c.client_ref == ref}  # type: ignore[attr-defined]
    return sum(1 for e in rig.events if type(e) is Trade and e.taker_order_id in ids)


# -- fault 1: the header, not the ring, says who sent it -------------------------------------


def test_a_mass_cancel_on_a_trading_ring_claiming_gateway_0_draws_on_the_rate(
    slow_rig: Rig,
) -> None:
    """Five mass cancels of BUYER on ``gw1-cmd`` in one step, each header saying gateway 0.
    README: a gateway's mass cancel draws on the account's rate (2 a second here), so some
    must be refused ``ACCOUNT_RATE_LIMITED``. Was (fixed): all five accepted and journaled;
    the router now takes the ring's gateway as the header (``gateway_rings.from_ring``)."""
    rig = slow_rig
    refs = range(100, 105)
    rig.send(1, *(MassCancel(0, 0, ADMIN, 1, ref, BUYER, 0) for ref in refs))
    rig.pump()
    codes = verdicts(rig, 1, refs)
    assert len(codes) == 5  # each answered on the ring it came on
    assert ResultCode.ACCOUNT_RATE_LIMITED in codes, f"gw1's kill switches all passed: {codes}"


def test_an_order_whose_header_names_another_gateway_is_not_executed_twice_after_a_crash(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BUYER's IOC on ``gw1-cmd`` with a header of gateway 2 is journaled and routed, then the
    router dies before committing gw1's ring. The restart reads it again. Right: it is one
    order (refused outright, or known as journaled): one fill. Was (fixed): not found under
    gateway 1's journaled commands, it was sequenced again and filled a second time; it is
    journaled, and looked up, as gateway 1's now."""
    rest_ask(rig)
    rig.send(1, ioc_buy(300, gateway=2))
    crash_before_commit(rig, monkeypatch)
    rig.kill(monkeypatch)
    rig.pump()
    sequenced = [c for c in journaled(rig, NewOrder) if c.client_ref == 300]  # type: ignore[attr-defined]
    assert len(sequenced) <= 1, f"one client order sequenced {len(sequenced)} times"
    assert trades_of(rig, 300) <= 1


# -- fault 2: the operator's commands from a trading gateway ---------------------------------


def test_a_deposit_on_a_trading_gateways_ring_is_refused(rig: Rig) -> None:
    """A ``Transfer`` of 1,000,000.0000 USD into OTHER on ``gw1-cmd`` (gateways 1 and 2 never
    send one; README: transfers are the operator's). Refused ``NOT_PERMITTED``, nothing
    credited or journaled (was: answered OK, OTHER credited, the USD total grown)."""
    usd_transfers = len(journaled(rig, Transfer))
    rig.send(1, Transfer(0, 0, 1, 1, 200, OTHER, USD, 10**10, 77))
    rig.pump()
    replies = [r for r in rig.told[1] if type(r) is AccountReply and r.client_ref == 200]
    assert len(replies) == 1  # answered, on its own ring: the router did not crash
    assert replies[0].code == ResultCode.NOT_PERMITTED, "a trading gateway's deposit was applied"
    assert rig.router.sequencer.accounts.balance(OTHER, USD)[0] == 0
    assert len(journaled(rig, Transfer)) == usd_transfers


def test_a_halt_on_a_trading_gateways_ring_is_refused(rig: Rig) -> None:
    """An ``AdminCommand(HALT)`` of every symbol on ``gw1-cmd``: dropped (it names no session
    to answer), not journaled, and BUYER's next order trades as before (was: journaled, and
    the order refused ``SYMBOL_HALTED``)."""
    rest_ask(rig)
    rig.send(1, AdminCommand(0, 0, AdminAction.HALT, 0, 987_654_321))
    rig.pump()
    rig.send(1, ioc_buy(301, gateway=1))
    rig.pump()
    halted = [
        e
        for e in rig.events
        if type(e) is Rejected and e.client_ref == 301 and e.code == ResultCode.SYMBOL_HALTED
    ]
    assert not journaled(rig, AdminCommand), "a trading gateway's HALT was sequenced"
    assert not halted
    assert trades_of(rig, 301) == 1


def test_a_mass_cancel_of_every_account_on_a_trading_ring_is_refused(rig: Rig) -> None:
    """SELLER's ask rests (placed on gateway 2). Gateway 1 sends a mass cancel of account 0
    (every account) on every symbol: ``ringex admin cancel-all --every-account``'s command,
    which no trading gateway builds (``rest_orders.py:234``). Refused ``NOT_PERMITTED``, the
    ask still resting with its BTC held (was: OK, and SELLER's ask cancelled)."""
    rest_ask(rig)
    rig.send(1, MassCancel(0, 0, 1, 1, 400, 0, 0))
    rig.pump()
    codes = verdicts(rig, 1, range(400, 401))
    assert codes == [ResultCode.NOT_PERMITTED], "gw1 cancelled every account's orders"
    assert rig.router.sequencer.accounts.balance(SELLER, 2)[0] == 10**6 - 1000  # still held


def test_an_account_opened_on_a_trading_gateways_ring_is_refused_and_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``CreateAccount`` on ``gw2-cmd``: ``NOT_PERMITTED`` on gateway 2's reply ring, the
    account not opened, nothing journaled, and an error naming the gateway and the record."""
    accounts = len(journaled(rig, CreateAccount))
    with caplog.at_level(logging.ERROR, logger="ringex.router"):
        rig.send(2, CreateAccount(0, 0, 2, 1, 210, 77))
        rig.pump()
    (reply,) = [r for r in rig.told[2] if type(r) is AccountReply and r.client_ref == 210]
    assert (reply.code, reply.account, reply.seq) == (ResultCode.NOT_PERMITTED, 77, 0)
    assert not rig.router.sequencer.accounts.known(77)
    assert len(journaled(rig, CreateAccount)) == accounts
    assert any("gateway 2 sent CreateAccount" in r.getMessage() for r in caplog.records)


# -- sound --------------------------------------------------------------------------------


def test_sound_a_trading_gateways_mass_cancel_draws_on_the_account_rate(slow_rig: Rig) -> None:
    """README: "a gateway's mass cancel draws on that rate like any command": five from gw1
    (header 1) at 2 a second: the first accepted, some refused ``ACCOUNT_RATE_LIMITED``,
    and only the accepted ones journaled."""
    rig = slow_rig
    refs = range(100, 105)
    rig.send(1, *(MassCancel(0, 0, 1, 1, ref, BUYER, 0) for ref in refs))
    rig.pump()
    codes = verdicts(rig, 1, refs)
    assert len(codes) == 5
    assert codes[0] == ResultCode.OK
    assert ResultCode.ACCOUNT_RATE_LIMITED in codes
    assert len(journaled(rig, MassCancel)) == codes.count(ResultCode.OK)


def test_sound_the_admin_rings_mass_cancel_is_never_held_by_the_rate(slow_rig: Rig) -> None:
    """README: "An operator's cancel-all is never refused for the rate of the account it
    stops": five from the admin ring at a rate of 2, all OK."""
    rig = slow_rig
    refs = range(100, 105)
    rig.send(ADMIN, *(MassCancel(0, 0, ADMIN, 0, ref, BUYER, 0) for ref in refs))
    rig.pump()
    assert verdicts(rig, ADMIN, refs) == [ResultCode.OK] * 5


def test_sound_a_refusal_goes_back_on_the_ring_it_came_from(rig: Rig) -> None:
    """OTHER (empty) buys on ``gw1-cmd`` with a header naming gateway 2: refused
    ``INSUFFICIENT_BALANCE`` on gateway 1's reply ring, nothing on gateway 2's (whose
    sessions never sent it)."""
    rig.send(1, order(500, OTHER, Side.BUY, 10_000, 10, gateway=2))
    rig.pump()
    assert verdicts(rig, 1, range(500, 501)) == [ResultCode.INSUFFICIENT_BALANCE]
    assert not [r for r in rig.told[2] if getattr(r, "client_ref", 0) == 500]


def test_sound_a_record_that_is_no_command_is_passed_over(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``Heartbeat`` on ``gw1-cmd`` (a gateway's bug): logged naming the gateway, ignored,
    and the order behind it decided; the router steps on."""
    rest_ask(rig)
    with caplog.at_level(logging.ERROR, logger="ringex.router"):
        rig.send(1, Heartbeat(0, 7, 1), ioc_buy(600, gateway=1))
        rig.pump()
    assert any("gateway 1 sent" in m and "not a command" in m for m in caplog.messages)
    assert trades_of(rig, 600) == 1


def test_sound_a_command_whose_header_is_its_ring_is_not_executed_twice_after_a_crash(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault 1b's control: the same IOC with a header of gateway 1 on ``gw1-cmd``, journaled
    and routed, a crash before the commit: read again, it is not sequenced again; one fill,
    and the restarted router's balances are the live ones."""
    rest_ask(rig)
    rig.send(1, ioc_buy(300, gateway=1))
    crash_before_commit(rig, monkeypatch)
    rig.kill(monkeypatch)
    rig.pump()
    sequenced = [c for c in journaled(rig, NewOrder) if c.client_ref == 300]  # type: ignore[attr-defined]
    assert len(sequenced) == 1
    assert trades_of(rig, 300) == 1
    live = {
        (a, asset): rig.router.sequencer.accounts.balance(a, asset)
        for a in (BUYER, SELLER)
        for asset in (USD, 2)
    }
    rig.kill(monkeypatch)  # a replay of the same journal
    again = {key: rig.router.sequencer.accounts.balance(*key) for key in live}
    assert again == live
