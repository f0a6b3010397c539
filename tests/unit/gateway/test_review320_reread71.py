"""Review 320: a reread of this session's changes (bcb2861..3b0c6b2).

Reviewed: ``git diff bcb2861 3b0c6b2 -- procs config README.md``, every hunk with the code
around it: ``procs/gateway/exchange_info.py`` (Binance's filters and flags),
``openapi.py`` / ``openapi_intro.py`` (the ExchangeInfo schema, the code list),
``rest_params.py`` (``_decimal``'s -1111, ``choice``'s -1115/-1116/-1117,
``over_notional``), ``api_errors.py`` (``order_refused``: NOTIONAL -1013, the 429),
``rest_new_orders.py`` (``order/test``, ``batchOrders``), ``rest_mass_cancel.py`` (429 over
the command rate), ``rest_amend.py`` (its refusals through ``order_refused``),
``procs/admin/args.py`` + ``procs/cli.py`` (``shm ls|rm --instance``), ``config/schema.py``
(``INSTANCE_PATTERN``), ``session.py`` (a FIX 4.4 type not taken, business-rejected before
validation; ``business_reject``'s 379) and ``dictionary.py`` (``REQUEST_IDS``); against
them ``procs/core/accounts.py`` (``reserve_new``: how the router judges a notional) and
``procs/core/money.py`` (``Market.cap``, ``largest_capped``).

Rig: the REST rig (``rest_rig.py``: real HTTP in front of real rings, router and matcher in
process; ALICE 601 with dollars, BOB 602 with bitcoin; BTC-USD on a 0.05 tick, bandBps
500), with ``risk.max_order_notional`` $100 (``bounded``, as review 315's) or
``risk.max_commands_per_s`` 1 (``slow``); the FIX harness (``harness`` fixture from this
directory's conftest: ALICE account 7) with the simplefix ``Client``, ``test_gateway``'s
``run`` / ``logged_on`` / ``status_request``, ``test_adversarial_fix.framed`` for a header
simplefix will not write, review 32's ``drain_for``; ``procs.cli.main`` through
``test_review_admin_bugs._cli``; ``/openapi.json``'s ``document`` with ``jsonschema_rs``.

Faults found (each fixed; its test says what it was):
1. ``POST order/test`` passes a stop-market order whose notional the router refuses from the order
   alone: with ``max_order_notional`` $100, BOB's STOP_LOSS SELL 10.00 at stopPrice 20.00 (judged
   at its stopPrice: 200) and ALICE's STOP_LOSS BUY 10.00 at stopPrice 20.00 (judged at its cap,
   20.00 + bandBps 500: 210) are each ``{}`` from ``order/test`` and 400 -1013 NOTIONAL_TOO_LARGE
   from ``POST order``. README says ``order/test`` checks "a priced order's notional" and leaves
   out only what the exchange alone knows ("a notional judged at the last trade"); neither stop is
   judged at the last trade, and the router's message names the price it used ("judged at the
   higher of its price and its stopPrice", "judged at its cap: its stopPrice plus bandBps 500").
   Cause: ``procs/gateway/rest_params.py:461`` (``over_notional`` returns at once when
   ``req.price`` is 0, though its own docstring judges a stop sell at max(price, stopPrice)).
   Fixed: ``over_notional`` caps a stop buy without a price as ``Accounts.reserve_new`` does, and
   both judge at ``Market.judged_at`` (``procs/core/money.py``), one function.
2. A FIX 4.4 type the gateway does not take (ExecutionReport 8) with a fault in its standard header
   is business-rejected (380=3) rather than session-rejected: no TargetCompID 56 (README, The FIX
   gateway: "one without SenderCompID or TargetCompID is a Reject 373=1 naming the tag, and the
   session goes on"), no SendingTime 52, or PossDupFlag Y without OrigSendingTime 122 (review 316's
   sound list: "Reject 373=1 371=122"). A D with the same header is refused 373=1 naming the tag; a
   QuickFIX acceptor validates the header of every message before its application sees the type.
   Cause: ``procs/gateway/session.py:524-530`` answers the type before ``dictionary.validate``
   (``:531``) and ``_check_orig_sending_time`` (``:535``) run, while ``session.py:463`` still
   counts on "validation rejects it (373=1 or 6)" for a missing SendingTime. Fixed: validation
   comes first again, and every type in ``dictionary.MESSAGES`` (those ringex only sends included)
   is validated against the whole FIX 4.4 specification of its type, so a field it defines is no
   Reject (review 316) and a header fault is one.
3. The BusinessMessageReject's BusinessRejectRefID (379) is the first present of a fixed list of
   tags (``REQUEST_IDS``: ClOrdID 11 first), whatever the type, not the rejected message's own
   business id: an ExecutionReport 8 with ExecID 17 "e1" and ClOrdID 11 "o1" is answered 379=o1,
   and a NewOrderList E (ListID 66 "L1", orders a1 and a2) 379=a2, the last order's ClOrdID
   (``FixMessage`` keeps the last of a repeated tag). FIX 4.4 defines 379 as "the value of the
   business-level ID field on the message being referenced" (ExecID for an 8, ListID for a list,
   QuoteID for a Quote S, which likewise gets its QuoteReqID 131); a client that files rejects by
   379 marks its order o1, or one order a2 of the list, as rejected. Cause:
   ``procs/gateway/dictionary.py:341`` and ``session.py:370``. Fixed:
   ``procs/gateway/reject_ref.py``'s table of each type's own id (8: 17; E, K, L, M, N: 66; S: 117;
   R: 131; V: 262; D, F, G, H, 9: 11; ...), read before the fallback list.

Sound (``test_sound_*``): exchangeInfo's real answers, with and without ``NOTIONAL``, validate
against ``/openapi.json``'s ExchangeInfo; a batch entry's code is the single order's for the
same input (-1111, -1116, -1117, -1013 for a tick, and -1013 for a router's notional
refusal); ``DELETE openOrders`` over the command rate is 429 -1015 with ``Retry-After: 1``;
every type in ``INBOUND_APP`` (D F G H q AF x e BE, and j taken in silence) still reaches the
application: none is business-rejected 380=3 or session-rejected; ``shm ls --instance`` with a
newline (``"dev\\n"``) is exit 2, and a well-formed name with no segments lists ``[]``, exit 0.

Leads not shown:
- ``PRICE_FILTER``'s ``maxPrice`` (MAX_INT64 on the tick, 92233720368547758.05 here) is past
  the largest stopPrice a STOP_LOSS BUY without a price may have
  (``money.largest_capped``: its cap must fit an int64); one between them is -2010
  INVALID_PRICE, not -1013. No balance can pay such an order anyway (-2010 either way), so
  not shown.
- ``NOTIONAL`` says ``applyMaxToMarket: true``; Binance judges a market order at its average
  price, the router a market buy at its cap (last trade + bandBps): a client sizing
  maxNotional / last is refused. README names the cap in the refusal, not in the filter.
- ``shm ls --instance a --instance b`` lists b in silence (``rm``'s ``--instance`` has
  ``Once``, ``ls``'s not; ``args.py``'s docstring promises an option "given at most once").
  Read-only, so not shown as a fault.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import msgspec
import pytest

from config.schema import RingexConfig
from procs.gateway.openapi import document
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import Client, Harness, utc
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run
from tests.unit.gateway.test_adversarial_fix import framed
from tests.unit.gateway.test_gateway import logged_on, status_request
from tests.unit.gateway.test_gateway import run as run_fix
from tests.unit.gateway.test_review32_fix_session import drain_for
from tests.unit.gateway.test_review47_rest_public import _get
from tests.unit.test_review_admin_bugs import _cli

ORDER = "/api/v1/order"
TEST = "/api/v1/order/test"


def _risk(**limits: int) -> Any:
    def reshape(cfg: RingexConfig) -> RingexConfig:
        return msgspec.structs.replace(cfg, risk=msgspec.structs.replace(cfg.risk, **limits))

    return reshape


@pytest.fixture
def plain(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The REST rig: no notional limit."""
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def bounded(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The REST rig with a $100 ``max_order_notional`` (exchangeInfo's ``NOTIONAL``)."""
    yield from rest_exchange(instance, tmp_path, reshape=_risk(max_order_notional=100 * 10**6))


@pytest.fixture
def slow(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """The REST rig with ``max_commands_per_s`` 1."""
    yield from rest_exchange(instance, tmp_path, reshape=_risk(max_commands_per_s=1))


def _code(answer: tuple[int, Any]) -> tuple[int, int]:
    status, body = answer
    return status, body.get("code", 0) if isinstance(body, dict) else 0


# -- fault 1 ----------------------------------------------------------------------------------


def test_order_test_judges_a_stop_market_orders_notional(bounded: Harness) -> None:
    """Scenario: ``max_order_notional`` $100 (exchangeInfo's NOTIONAL maxNotional 100); BOB
    tests then sends a STOP_LOSS SELL 10.00 at stopPrice 20.00, ALICE a STOP_LOSS BUY 10.00
    at stopPrice 20.00. Expected: order/test answers each as POST order does, 400 -1013
    (the router judges them at their stopPrice and at its cap, known from the order alone,
    not at the last trade). Was (fixed): order/test ``{}`` for both, POST order 400 -1013."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        stop: dict[str, Any] = {
            "symbol": "BTC-USD", "type": "STOP_LOSS", "stopPrice": "20.00", "quantity": "10.00"
        }  # fmt: skip
        try:
            got = {}
            for who, side in ((bob, "SELL"), (alice, "BUY")):
                tested = _code(await who.request("POST", TEST, **stop, side=side))
                placed = _code(await who.request("POST", ORDER, **stop, side=side))
                got[side] = (tested, placed)
            assert got["SELL"][1] == got["BUY"][1] == (400, -1013), got
            assert got == {s: ((400, -1013), (400, -1013)) for s in ("SELL", "BUY")}, got
        finally:
            await alice.close()
            await bob.close()

    run(bounded, scenario)


# -- fault 2 ----------------------------------------------------------------------------------

_EXEC_REPORT: list[tuple[int, object]] = [
    (37, "1"), (11, "o1"), (17, "e1"), (150, "0"), (39, "0"), (55, "BTC-USD"), (54, "1"),
    (151, "1"), (14, "0"), (6, "0"),
]  # fmt: skip
_NEW_ORDER: list[tuple[int, object]] = [
    (11, "d1"), (55, "BTC-USD"), (54, "1"), (60, "20260101-00:00:00"), (38, "1"), (40, "2"),
    (44, "10.00"),
]  # fmt: skip
_HEADER_FAULTS = {  # what is left out of the standard header, and the tag a Reject names
    "no-TargetCompID": (56, b"56"),
    "no-SendingTime": (52, b"52"),
    "PossDup-without-OrigSendingTime": (122, b"122"),
}


async def _answers(c: Client, kind: str, body: list[tuple[int, object]], left_out: int) -> Any:
    """``c``'s answers (heartbeats aside) to one message of ``kind`` whose standard header
    lacks tag ``left_out`` (122: PossDupFlag Y, no OrigSendingTime)."""
    if left_out == 122:
        await c.send(kind, *body, poss_dup=True)
    else:
        head = [(35, kind), (49, "ALICE"), (56, "RINGEX"), (34, c.seq), (52, utc().decode())]
        c.seq += 1
        await c.send_raw(framed(*(f for f in head if f[0] != left_out), *body))
    return [(m.get(35), m.get(373), m.get(371)) for m in await drain_for(c) if m.get(35) != b"0"]


@pytest.mark.parametrize("fault", list(_HEADER_FAULTS))
def test_a_header_fault_in_a_type_not_taken_is_still_a_session_reject(
    harness: Harness, fault: str
) -> None:
    """Scenario: ALICE sends an ExecutionReport (8) whose standard header lacks
    TargetCompID, or SendingTime, or has PossDupFlag Y without OrigSendingTime; a D with the
    same header fault is refused 373=1 naming the tag. Expected: the same session Reject
    373=1 371=<tag> for the 8 (README: "one without SenderCompID or TargetCompID is a Reject
    373=1 naming the tag"; the header is the session's, whatever the type). Was (fixed): a
    BusinessMessageReject 380=3 "MsgType 8 is not accepted"."""
    left_out, tag = _HEADER_FAULTS[fault]

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        as_d = await _answers(c, "D", _NEW_ORDER, left_out)
        assert as_d == [(b"3", b"1", tag)], as_d  # the order's Reject names the tag
        as_8 = await _answers(c, "8", _EXEC_REPORT, left_out)
        assert as_8 == [(b"3", b"1", tag)], as_8

    run_fix(harness, scenario)


# -- fault 3 ----------------------------------------------------------------------------------

_LIST: list[tuple[int, object]] = [
    (66, "L1"), (394, 3), (68, 2), (73, 2),
    (11, "a1"), (67, 1), (55, "BTC-USD"), (54, "1"), (38, 1), (40, "1"),
    (11, "a2"), (67, 2), (55, "BTC-USD"), (54, "1"), (38, 1), (40, "1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "body", "own_id"),
    [("8", _EXEC_REPORT, b"e1"), ("E", _LIST, b"L1")],
    ids=["ExecutionReport-ExecID", "NewOrderList-ListID"],
)
def test_a_business_reject_names_the_messages_own_id(
    harness: Harness, kind: str, body: list[tuple[int, object]], own_id: bytes
) -> None:
    """Scenario: ALICE sends an ExecutionReport (ExecID 17 e1, ClOrdID 11 o1), or a
    NewOrderList (ListID 66 L1, orders a1 and a2); the gateway takes neither type.
    Expected: a BusinessMessageReject 380=3 whose BusinessRejectRefID 379 is the message's
    own business id (FIX 4.4: ExecID for an 8, ListID for a list). Was (fixed): 379=o1, the
    ClOrdID, and 379=a2, the last order's ClOrdID inside the list's group."""

    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        await c.send(kind, *body)
        reject = await c.expect("j")
        assert (reject.get(380), reject.get(372)) == (b"3", kind.encode())
        assert reject.get(379) == own_id, str(reject)

    run_fix(harness, scenario)


# -- sound ------------------------------------------------------------------------------------


@pytest.mark.parametrize("limited", [False, True], ids=["no-notional", "notional"])
def test_sound_exchange_info_answers_match_the_openapi_schema(
    instance: str, tmp_path: Path, limited: bool
) -> None:
    reshape = _risk(max_order_notional=100 * 10**6) if limited else _risk()
    for h in rest_exchange(instance, tmp_path, reshape=reshape):
        schema = jsonschema_rs.validator_for(
            {**document(h.cfg), "$ref": "#/components/schemas/ExchangeInfo"}
        )

        async def scenario(api: RestApi, url: str, schema: Any = schema) -> None:
            for query in ({}, {"symbol": "BTC-USD"}, {"symbols": '["BTC-USD"]'}):
                status, body = await _get(url, "/api/v1/exchangeInfo", **query)
                assert status == 200, body
                schema.validate(body)
                kinds = [f["filterType"] for f in body["symbols"][0]["filters"]]
                assert ("NOTIONAL" in kinds) is limited, kinds

        run(h, scenario)


def test_sound_a_batch_entry_has_the_single_orders_code(bounded: Harness) -> None:
    cases: list[dict[str, Any]] = [
        {**LIMIT, "price": "10.001", "quantity": "1.00"},  # -1111
        {**LIMIT, "type": "TAKE_PROFIT", "price": "10.00", "quantity": "1.00"},  # -1116
        {**LIMIT, "side": "HOLD", "price": "10.00", "quantity": "1.00"},  # -1117
        {**LIMIT, "price": "10.01", "quantity": "1.00"},  # -1013 off the tick
        {**LIMIT, "price": "20.00", "quantity": "10.00"},  # -1013 the router's notional
        {**LIMIT, "type": "STOP_LOSS", "stopPrice": "20.00", "quantity": "10.00"},  # router
    ]

    async def scenario(api: RestApi, url: str) -> None:
        alice: RestClient = await client(url, "ALICE", "alice-pw")
        try:
            single = [_code(await alice.request("POST", ORDER, **o)) for o in cases]
            batched = await alice.batch_orders(cases)
            assert [c for _, c in single] == [-1111, -1116, -1117, -1013, -1013, -1013], single
            assert [b.get("code") for b in batched] == [c for _, c in single], batched
        finally:
            await alice.close()

    run(bounded, scenario)


def test_sound_a_mass_cancel_over_the_command_rate_is_429_with_retry_after(
    slow: Harness,
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            await alice.call("POST", ORDER, **LIMIT, price="90.00", quantity="1")
            query = "symbol=BTC-USD"
            headers = alice.headers("DELETE", "/api/v1/openOrders", query, b"")
            async with alice.session.delete(
                f"{url}/api/v1/openOrders?{query}", headers=headers
            ) as r:
                status, retry, body = r.status, r.headers.get("Retry-After"), await r.json()
            assert (status, retry, body["code"]) == (429, "1", -1015), body
            assert "ACCOUNT_RATE_LIMITED" in body["msg"], body
        finally:
            await alice.close()

    run(slow, scenario)


_TAKEN: list[tuple[str, list[tuple[int, object]], set[bytes]]] = [
    ("D", _NEW_ORDER, {b"8"}),
    ("F", [(11, "f1"), (41, "zz"), (55, "BTC-USD"), (54, "1"), (60, "20260101-00:00:00")],
     {b"9"}),
    ("G", [(11, "g1"), (41, "zz"), *_NEW_ORDER[1:]], {b"9"}),
    ("H", [*status_request("d1", "1")], {b"8"}),
    ("q", [(11, "m1"), (530, "7"), (60, "20260101-00:00:00")], {b"r", b"8"}),
    ("AF", [(584, "s1"), (585, 7)], {b"8"}),
    ("x", [(320, "x1"), (559, 4)], {b"y"}),
    ("e", [(324, "e1"), (55, "BTC-USD"), (263, 0)], {b"f"}),
    ("BE", [(923, "u1"), (924, 4), (553, "ALICE")], {b"BF"}),
    ("j", [(45, 1), (372, "8"), (380, 0)], set()),
]  # fmt: skip


def test_sound_every_type_the_gateway_takes_reaches_the_application(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        for kind, body, answers in _TAKEN:
            await c.send(kind, *body)
            got = {m.get(35) for m in await drain_for(c) if m.get(35) != b"0"}
            assert got == answers, (kind, got)

    run_fix(harness, scenario)


def test_sound_shm_instance_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["shm", "ls", "--instance", "dev\n"]) == 2
    assert "is not an instance name" in capsys.readouterr().err
    assert _cli(["shm", "ls", "--instance", "r320-none", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
