"""Review 293: a reread of session 68's gateway changes.

Reviewed: ``git diff ec67f27 -- procs/gateway procs/common/apikeys.py`` and the commits'
messages (5c1f02c, 1533e28, 33d242f, b22b486, 815d061) against the review files that made
them (281, 282, 284, 286, 290, 292): ``order_fields.amounts`` (a G's own StopPx off a
raised tick), ``signing.py`` (the text as sent; ``not_before_mono_ms``), ``rest.py``,
``rest_params.symbols``, ``apikeys.ApiKeyStore.create`` (``held``) with ``rest_keys.py``,
``rest_balances._balance`` (``_unstreamed``) with ``rest_interest.py``, ``restart.py``
(``_note_read_again``, ``read_again``), ``server.pump``, ``order_replies._deliver``,
``order_memory.restore``; ``resend.py`` and ``server.park`` for where 97=Y ends up.

Rig: the gateway tests' FIX harness (conftest.py's ``harness`` fixture over ``harness.py``:
real rings, an in-process router and matcher, a gateway over TCP, simplefix clients; ALICE 7,
BOB 8), its ``crash`` and review 30's ``kill_at`` for a SIGKILL at a batch's order-log frame;
the input rings' reads held back (``_held``) so a pass is driven by calling ``pump`` in the
test, and a client's bytes handed to its ``Connection`` in the same step (no interleaving left
to the loop).
Review 161's ``rest_rig`` (real HTTP) for the login; a bare ``RestOrders`` core fed
``Balance`` records for the stream; ``amounts``, ``symbols``, ``Verifier`` and
``ApiKeyStore`` called directly.

Faults found (each fixed; its test says what it was):

1. PossResend (97=Y) on answers made of no event: an OrderStatusRequest (H) answered right
   after a restarted gateway's first pass re-read its matcher ring says 97=Y.
   ``procs/gateway/server.py:304`` sets ``entry.replaying`` per ring before its read and
   never clears it: after the loop it holds the last ring's value, and the client requests
   handled before the next ``pump`` (``order_replies.py:210``, ``_deliver``: H, AF, a
   cancel reject) are marked as possibly sent before. Fixed: ``pump``'s ``finally`` clears
   it.
2. PossResend on reports never sent: after a CLEAN stop (``shutdown``: every event read is
   in the order log), a fill that happened while the gateway was down is reported with
   97=Y. ``procs/gateway/restart.py:331`` (``_note_read_again``) takes every event up to
   the ring's end at the start as maybe reported before, whatever ended the last run; only
   a crash between a batch's reports and its log frame re-reads anything. Fixed: a
   ``shutdown`` leaves ``stopped-cleanly`` in the gateway's directory (``mark_clean_stop``);
   the next start finds it, removes it and marks nothing.
3. A balance change held back for its label is lost from the private stream when the label
   comes by a snapshot: ALICE streams, a push moves USD (labelled before a TRADE read here,
   so it waits in ``_unstreamed``), the router restarts (pushes stop), ``_renew_behind``
   asks a snapshot, which agrees with the held value: nothing is streamed, ``_unstreamed``
   keeps USD, and the stream's USD stays the old one while ``GET account`` says the new.
   ``procs/gateway/rest_balances.py:119-150`` (the snapshot branch) diffs the snapshot
   against ``known``, which already holds the unstreamed value, and never drains
   ``_unstreamed`` (only the push branch, ``:163-174``, does). Fixed: the snapshot branch
   adds the assets that differ to ``_unstreamed`` and both branches stream it
   (``_stream_settled``) once ``has_seen``, with the values then.
4. A users file that cannot be read while a login's key is made is answered 400 -1100
   with the file's error as if the client's parameter were bad: ``held`` runs inside
   ``ApiKeyStore.create`` (``procs/common/apikeys.py:273``) and ``UsersFileError`` is a
   ``ValueError``, which ``procs/gateway/rest_keys.py:74`` takes as "the client's: a
   scope, a label". Before the change the same error left the handler (a 500). Fixed:
   ``create_key`` takes ``UsersFileError`` with the key files' errors: a log line, 503.

Sound:

- a G of an untriggered stop (OrdType 3) restating its own StopPx off a raised tick is
  taken; a G of another OrdType cannot reach the equality with a zero stop: ``differs``
  refuses a changed OrdType first (``orders.py:358``);
- a zero-padded timestamp and recvWindow signed as sent are taken, the respelling of a
  signature over the plain numbers is refused (BAD_SIGNATURE), and the same request sent
  twice is REPLAYED;
- the start judged on the monotonic clock: after a step back of an hour a request is
  taken, and one signed before the start as the clock now reads it is refused;
- ``exchangeInfo?symbols`` spelt in two cases lists the symbol once, in the order asked;
- ``create(held=lambda: False)`` raises ``NotHeldError`` and writes nothing, no key evicted.

Leads not shown:

- ``procs/gateway/signing.py:276-278``: judged on the monotonic clock, a step back of the
  wall clock AFTER a restart moves the start back too: a request captured within that step
  before the restart is taken again (review 44's replay), as the clock steps now put it.
  Indistinguishable from review 282's case (a start read with the clock ahead) without a
  start time kept across runs; a trade-off, not claimed.
- ``procs/gateway/server.py:304-305``: the flag is judged before a read of up to 256
  events; events published after the start and read in the same batch as re-read ones get
  97=Y too (a narrower form of fault 2); fix: split the batch at ``_again``'s end.
- ``rest_balances.py`` snapshot branch: an unstreamed asset that the snapshot DOES change
  is streamed by the diff and again at the next labelled push (a duplicate, harmless).
- the private stream's timestamp and recvWindow are the query's decoded values
  (``private_stream.py:228``): "as sent" there means after percent-decoding.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from procs.common.apikeys import ApiKeyStore, NotHeldError
from procs.common.records import Balance, Record
from procs.common.types import OrdType, Side, TimeInForce
from procs.common.users import User, UsersFileError, UserStore
from procs.gateway import order_fields as of
from procs.gateway import rest_params
from procs.gateway.instruments import Instruments
from procs.gateway.order_state import Order
from procs.gateway.rest_client import ApiCallError, RestClient
from procs.gateway.rest_orders import RestOrders
from procs.gateway.server import GatewayServer
from procs.gateway.signing import BAD_SIGNATURE, OUTSIDE_WINDOW, REPLAYED, AuthError, Verifier
from procs.gateway.signing import sign as sign_numbers
from tests.unit.gateway.harness import USD, Client, Harness, config, run_scenario, settled
from tests.unit.gateway.test_gateway import logged_on, order, status_request
from tests.unit.gateway.test_gateway_restart import back_on, crash, drain, run
from tests.unit.gateway.test_review30_durability import has_cursors, kill_at, taker
from tests.unit.gateway.test_review112_readme_fix2 import SYM, message
from tests.unit.gateway.test_review161_password_changes import FAST, gateway, rest_rig
from tests.unit.test_review278_config_changes import RAISED

ALICE = 7

# -- rig -------------------------------------------------------------------------------------


def _held(gw: GatewayServer) -> list[bool]:
    """Every input ring of ``gw`` reads nothing while the returned list is non-empty."""
    held = [True]
    for consumer in gw.inputs:
        read = consumer.read

        def nothing_while_held(n: int = 256, read: Any = read) -> list[Any]:
            return [] if held else read(n)

        consumer.read = nothing_while_held  # type: ignore[method-assign, assignment]
    return held


def _reports(got: list[Any], cl: bytes, exec_type: bytes) -> list[Any]:
    return [m for m in got if m.get(35) == b"8" and m.get(11) == cl and m.get(150) == exec_type]


async def _ack_then_crash(h: Harness, port: int) -> tuple[Client, Any]:
    """ALICE's D 'a1' acknowledged; the gateway SIGKILLed at that batch's log frame."""
    alice = await logged_on(port)
    gw = h.gateway
    assert gw is not None
    dead = kill_at(gw, has_cursors, written=False)
    await alice.send("D", *order("a1", "2", "1.00", "100.00"))
    ack = await alice.expect("8")
    await settled(lambda: bool(dead))
    assert dead
    await crash(h)
    await alice.aclose()
    return alice, ack


# == fault 1 ===================================================================================


def test_a_status_answer_after_the_reread_pass_carries_no_possresend(harness: Harness) -> None:
    """Scenario: ALICE's ack of 'a1' was sent, then SIGKILL before its log frame; the gateway
    restarts and ALICE logs on keeping her numbers. The first pass reads the matcher ring's
    events again (the ack is made again, 97=Y: review 292); before the next pass ALICE's
    OrderStatusRequest (H) for 'a1' is answered.
    Expected: the status report (150=I) is made now, of no event: no PossResend (97).
    Was (fixed): it carries 97=Y: ``entry.replaying`` stays True after ``pump`` (the last
    ring's)."""

    async def scenario(h: Harness, port: int) -> None:
        alice, ack = await _ack_then_crash(h, port)
        port = await h.start()
        gw = h.gateway
        assert gw is not None
        held = _held(gw)  # the re-read waits for ALICE's logon
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, int(ack.get(34)) + 1), (16, 0))
        await drain(alice)
        held.clear()
        assert gw.pump()  # the re-read pass: the ack again, with 97=Y
        conn = next(c for c in gw.connections if c.session and c.session.comp_id == "ALICE")
        conn.data_received(alice.message("H", *status_request("a1", "2")).encode())
        got = await drain(alice)
        assert [m.get(97) for m in _reports(got, b"a1", b"0")] == [b"Y"]  # what 292 fixed
        status = _reports(got, b"a1", b"I")
        assert len(status) == 1
        assert status[0].get(97) is None, str(status[0])

    run(harness, scenario)


# == fault 2 ===================================================================================


def test_a_fill_made_while_the_gateway_was_stopped_cleanly_is_no_possresend(
    harness: Harness,
) -> None:
    """Scenario: ALICE's sell 'o1' rests; the gateway is stopped cleanly (its log holds all
    it read); BOB's IOC (through the funder's ring) fills 'o1' meanwhile; the gateway starts
    again and ALICE logs on keeping her numbers and asks for the gap.
    Expected: the fill (150=F) was never sent before: it comes without PossResend (97).
    Was (fixed): 97=Y: every event up to the ring's end at the start is taken as maybe reported."""

    async def scenario(h: Harness, port: int) -> None:
        alice = await logged_on(port)
        await alice.send("D", *order("o1", "2", "1.00", "100.00"))
        ack = await alice.expect("8")
        assert ack.get(150) == b"0"
        await h.stop()
        await alice.aclose()
        h.funder.publish_batch([taker(8, 100, ref=901)])
        h.step_pipeline()  # filled in the matcher while gw1 is down
        port = await h.start()
        alice = await back_on(port, "ALICE", alice.seq)
        await alice.send("2", (7, int(ack.get(34)) + 1), (16, 0))
        fills = _reports(await drain(alice), b"o1", b"F")
        assert len(fills) == 1
        assert fills[0].get(97) is None, str(fills[0])

    run(harness, scenario)


# == fault 3 ===================================================================================


def _core() -> RestOrders:
    cfg = config("unused", Path("/nonexistent"))
    out: list[Record] = []
    refs = itertools.count(100)
    return RestOrders(1, Instruments(cfg.symbols), cfg.assets, out, lambda: next(refs))


def _usd(seq: int, ref: int, free: int, held: int, last: int = 0) -> Balance:
    """ALICE's USD as the router says it: a push (``ref`` 0) or a snapshot's record."""
    return Balance(seq, 0, 1, 1, ref, ALICE, USD, free, held, last)


def test_a_change_held_for_its_label_is_streamed_when_a_snapshot_brings_it() -> None:
    """Scenario: ALICE streams (USD 1000 free); a TRADE of hers is read here at seq 20; the
    router's push labelled 15 moves USD to 900 free, 100 locked (held: has_seen is False);
    the router restarts, its pushes stop; the ticks ask a snapshot (``_renew_behind``),
    labelled 25, which says 900/100 too.
    Expected: the stream is told USD 900/100 once the snapshot brings the label, as
    ``GET account`` answers it then.
    Was (fixed): nothing is streamed; USD waits in ``_unstreamed`` for a push that may never
    come."""
    core = _core()
    core.touch(ALICE, 1, 0.0)
    watch = core.outgoing[-1]
    core._balance(_usd(10, watch.client_ref, 1_000, 0, last=1))  # type: ignore[attr-defined]
    core.streaming.add(ALICE)
    core._need[ALICE] = 20  # a TRADE of hers read here at seq 20 (``process`` sets it so)
    core._balance(_usd(15, 0, 900, 100))
    assert core.balance_events == []  # held for its label: review 290's fix
    core.tick(2.0)
    core.tick(3.5)  # behind a tick ago and still: a snapshot is asked
    renewal = core._renewing[ALICE]
    core._balance(_usd(25, renewal, 900, 100, last=1))
    assert core.has_seen(ALICE) and core.account_balances(ALICE) == {USD: (900, 100)}
    streamed = [data for account, _, data in core.balance_events if account == ALICE]
    assert streamed == [{"asset": "USD", "free": "0.000900", "locked": "0.000100"}], (
        f"streamed {streamed}; still held {core._unstreamed}"
    )


# == fault 4 ===================================================================================


@pytest.fixture
def rest_h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield rest_rig(instance, tmp_path, max_keys_per_user=1)


def test_an_unreadable_users_file_during_a_login_is_not_the_clients_bad_parameter(
    rest_h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: ALICE logs in over REST; her password check and the pre-check pass; while
    ``create`` waits for the keys' lock the users file becomes unreadable (forced: a wrapper
    around ``create`` makes ``logins.get`` raise ``UsersFileError``, as a damaged file does).
    Expected: a server-side answer (503 "could not be read", as a damaged keys file gets, or
    at least a 5xx), never a 400 blaming a parameter.
    Was (fixed): 400 -1100 with the users file's error text: ``held`` raises inside ``create`` and
    ``rest_keys.py:74``'s ``except ValueError`` (the client's scope or label) takes it."""

    async def scenario(h: Harness, port: int) -> None:
        api = gateway(h).api
        assert api is not None
        client = RestClient(f"http://127.0.0.1:{api.port}")
        real = api.keys.create

        def damaged_meanwhile(user: User, *args: Any, **kwargs: Any) -> Any:
            def unreadable(comp_id: str) -> None:
                raise UsersFileError(f"users file {h.cfg.instance}/users.json: bad CRC")

            monkeypatch.setattr(api.logins, "get", unreadable)
            return real(user, *args, **kwargs)

        monkeypatch.setattr(api.keys, "create", damaged_meanwhile)
        try:
            with pytest.raises(ApiCallError) as refused:
                await client.login("ALICE", "secret")
            assert refused.value.status >= 500, refused.value
        finally:
            await client.close()

    run_scenario(rest_h, scenario)


# == sound =====================================================================================


def test_sound_a_g_of_an_untriggered_stop_restates_its_off_tick_stop() -> None:
    """A stop (OrdType 3, StopPx 100.01) under a tick raised to 0.05: a G restating its
    StopPx is taken with the order's own; a new StopPx off the tick is refused naming it."""
    was = Order(
        1, 5, b"o", b"", SYM, Side.BUY, OrdType.STOP, TimeInForce.GTC, 0, 10_001, 500,
        order_id=9, leaves=500, status=b"0",
    )  # fmt: skip

    def g(stop: str) -> Any:
        pairs = [(t, v) for t, v in order("n", "1", "5", None) if t not in (38, 40)]
        return message("G", (41, "o"), *pairs, (40, "3"), (38, "4"), (99, stop))

    assert of.amounts(g("100.010"), RAISED, OrdType.STOP, replacing=was) == (0, 10_001, 400, 0)
    other = of.amounts(g("100.02"), RAISED, OrdType.STOP, replacing=was)
    assert isinstance(other, of.Fault) and "StopPx 100.02" in other.text, other


def _verifier(**kw: Any) -> Verifier:
    return Verifier(60_000, 5_000, **kw)


def test_sound_a_request_is_signed_over_its_text_as_sent() -> None:
    """``05000`` signed as sent is taken; signed as 5000 and sent as 05000 it is refused;
    sent twice it is REPLAYED."""
    now = 1_700_000_000_000
    args = ("GET", "/api/v1/account", "", b"")
    padded = sign_numbers("s", "0" + str(now), "05000", *args)  # type: ignore[arg-type]
    v = _verifier()
    v.verify("s", "0" + str(now), "05000", padded, *args, now)
    with pytest.raises(AuthError) as again:
        v.verify("s", "0" + str(now), "05000", padded, *args, now)
    assert again.value.code == REPLAYED
    plain = sign_numbers("s", now, 5_000, *args)
    with pytest.raises(AuthError) as respelt:
        _verifier().verify("s", str(now), "05000", plain, *args, now)
    assert respelt.value.code == BAD_SIGNATURE


def test_sound_the_start_is_judged_as_the_clock_reads_it_now() -> None:
    """Started with the wall clock an hour ahead (monotonic 0), stepped back a second later:
    a request signed now is taken; one signed before the start (as the clock now puts it)
    is refused OUTSIDE_WINDOW."""
    hour, true_start = 3_600_000, 1_700_000_000_000
    v = _verifier(not_before_ms=true_start + hour, not_before_mono_ms=0)
    now, args = true_start + 1_000, ("GET", "/api/v1/account", "", b"")
    v.verify("s", str(now), None, sign_numbers("s", now, 5_000, *args), *args, now, 1_000)
    before = true_start - 1
    with pytest.raises(AuthError) as early:
        v.verify("s", str(before), None, sign_numbers("s", before, 5_000, *args), *args, now,
                 1_000)  # fmt: skip
    assert early.value.code == OUTSIDE_WINDOW and str(true_start) in early.value.msg


def test_sound_exchange_info_lists_a_symbol_spelt_twice_once() -> None:
    instruments = Instruments(config("unused", Path("/nonexistent")).symbols)
    found = rest_params.symbols({"symbols": '["btc-usd", "BTC-USD", "Btc-Usd"]'}, instruments)
    assert [s.name for s in found] == ["BTC-USD"]


def test_sound_create_not_held_writes_nothing(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.json")
    users.add("ALICE", "secret", 7, n=FAST)
    alice = users.get("ALICE")
    assert alice is not None
    keys = ApiKeyStore(tmp_path / "apikeys.json", 1)
    first = keys.create(alice, ["read"])
    with pytest.raises(NotHeldError):
        keys.create(alice, ["read"], evict_oldest=True, held=lambda: False)
    assert keys.evicted is None
    assert [k.key for k in ApiKeyStore(tmp_path / "apikeys.json", 1).keys_of("ALICE")] == [
        first.key
    ]
