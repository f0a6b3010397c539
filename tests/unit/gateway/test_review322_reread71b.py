"""Review 322: a reread of 17bc21a (FIX 4.4 validation of every type, reject_ref.py's 379,
Market.judged_at, run_demo's end).

Reviewed: ``git show 17bc21a -- procs scripts README.md``: ``procs/gateway/dictionary.py``
(the loop after ``_by_the_spec``, outbound types keeping ringex's own groups),
``session.py`` (``_in_sequence``: validation, then 380=3 for a type not taken),
``reject_ref.py`` (``OWN_IDS``, ``REQUEST_IDS``), ``procs/core/money.py``
(``Market.judged_at``) with ``accounts.py`` (``reserve_new``) and ``rest_params.py``
(``over_notional``), ``scripts/run_demo.py`` with ``run_files.read_status`` /
``supervisor_running``; against ``git show 3b0c6b2:procs/gateway/dictionary.py``.

Rig: the FIX harness (``harness`` fixture: ALICE logged on through ``test_gateway``'s
``logged_on`` / ``run``), review 32's ``drain_for`` for every answer but heartbeats; the
3b0c6b2 dictionary loaded beside today's from ``git show`` to compare its tables.

Faults found (each fixed; its test says what it was):
1. A client's SecurityList (y) valid by FIX 4.4, whose NoRelatedSym (146) entry carries a field FIX
   4.4 defines there (SecurityID 48 / SecurityIDSource 22, Text 58, a nested NoLegs 555), is a
   session Reject 373=2 naming that tag, not the BusinessMessageReject 380=3 a plain one gets (and
   every such y got at 3b0c6b2). Cause: ``procs/gateway/dictionary.py:358-361`` puts ringex's own
   group 146 (55, 969, 15, 561, 562: what it writes) in place of the spec's group of the same count
   tag, so the spec's other members become tags not defined for the message. Fixed:
   ``Group.merged`` (``fix_groups.py``) adds the members ringex writes that FIX 4.4 lacks (969
   after 55) to the spec's group of the same count tag, so both ringex's entries and the spec's
   validate.
2. BusinessRejectRefID 379 still names an order's ClOrdID inside a group, not the message's own id,
   for types ``OWN_IDS`` leaves out: a NewOrderCross (s, CrossID 548 X1, sides c1 and c2) is
   answered 379=c2 (the last side's ClOrdID), an AllocationInstruction (J, AllocID 70 A1, NoOrders
   entry o1) 379=o1, the very case the commit fixed for a list E. Cause:
   ``procs/gateway/reject_ref.py:14-19`` (no s/t/u, J, AE) falling back at ``:29`` to
   ``REQUEST_IDS`` read anywhere in the message, group entries included. Fixed: ``OWN_IDS`` has s,
   t, u (CrossID 548), J and P (AllocID 70), AS and AT (AllocReportID 755) and AE (TradeReportID
   571); the fallback still reads the message's last of a tag (a lead: no standard type left to it
   was found with a request id inside a group).

Sound (``test_sound_*``): a valid FIX 4.4 ExecutionReport with its NoPartyIDs group, an
OrderCancelReject, an OrderMassCancelReport with NoAffectedOrders, a SecurityStatus with
SecurityID, a UserResponse are each 380=3 naming their own id; every table derived from
MESSAGES for the types the gateway takes (allowed tags, group members, required tags,
``UNSUPPORTED_ORDER_FIELDS``, ``UNSUPPORTED_ORDER_GROUPS``) is as at 3b0c6b2;
``Market.judged_at`` equals the router's former inline judgement for every kind and side.

Leads not shown:
- The own ``required`` tuples of 8 and f still require Symbol 55, which FIX 4.4 (QuickFIX's
  Instrument component) may leave out for SecurityID 48 + 22: such an 8 would be 373=1, not
  380=3. fix44.json keeps no required flags, so not shown against the spec.
- ``run_demo`` ends on one ``supervisor_running(read_status(cfg)) is None``: status.json is
  renamed over whole, so no torn read was found; a promotion that hands the instance to
  another supervisor pid was not exercised.
- ``over_notional`` judges a stop buy's cap past MAX_TOTAL (the router: INVALID_PRICE) as
  a notional: a 400 either way.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from procs.common.types import OrdType, Side
from procs.core.money import Market
from procs.gateway import dictionary
from tests.unit.gateway.harness import Client, Harness
from tests.unit.gateway.test_gateway import logged_on
from tests.unit.gateway.test_gateway import run as run_fix
from tests.unit.gateway.test_review32_fix_session import drain_for

Body = list[tuple[int, object]]
_ROOT = Path(__file__).resolve().parents[3]


async def _answers(c: Client, kind: str, body: Body) -> Any:
    """(35, 373 or 380, 371 or 379) of each answer to one ``kind`` message, heartbeats aside."""
    await c.send(kind, *body)
    return [
        (m.get(35), m.get(373) or m.get(380), m.get(371) or m.get(379))
        for m in await drain_for(c)
        if m.get(35) != b"0"
    ]


def _check(harness: Harness, kind: str, body: Body, expected: Any) -> None:
    async def scenario(h: Harness, port: int) -> None:
        c = await logged_on(port)
        got = await _answers(c, kind, body)
        assert got == expected, got

    run_fix(harness, scenario)


# -- fault 1 ----------------------------------------------------------------------------------

_SEC_LIST: Body = [(320, "r1"), (322, "s1"), (560, 0), (146, 1), (55, "BTC-USD")]
_ENTRIES: dict[str, Body] = {
    "SecurityID": [(48, "XBT"), (22, "8")],
    "Text": [(58, "hi")],
    "NoLegs": [(555, 1), (600, "L")],
}


@pytest.mark.parametrize("entry", list(_ENTRIES))
def test_a_security_list_with_its_spec_group_is_business_rejected(
    harness: Harness, entry: str
) -> None:
    """Scenario: ALICE sends a SecurityList (y) valid by FIX 4.4 whose one NoRelatedSym entry
    carries Symbol and a field FIX 4.4 defines in that entry (SecurityID 48 + 22, Text 58, a
    NoLegs 555 entry). Expected: BusinessMessageReject 380=3 naming SecurityReqID r1, as for
    the same y without that field (README: a type it sends itself, "once valid by FIX 4.4").
    Was (fixed): a session Reject 373=2 (tag not defined for the message) naming 48, 58 or 555."""
    _check(harness, "y", [*_SEC_LIST, *_ENTRIES[entry]], [(b"j", b"3", b"r1")])


def test_sound_a_security_list_as_ringex_writes_it_is_business_rejected(
    harness: Harness,
) -> None:
    _check(harness, "y", [*_SEC_LIST, (969, "0.05"), (15, "USD")], [(b"j", b"3", b"r1")])


# -- fault 2 ----------------------------------------------------------------------------------

_CROSS: Body = [
    (548, "X1"), (549, 1), (550, 0), (552, 2),
    (54, "1"), (11, "c1"), (38, 1), (54, "2"), (11, "c2"), (38, 1),
    (55, "BTC-USD"), (40, "1"), (60, "20260101-00:00:00"),
]  # fmt: skip
_ALLOC: Body = [
    (70, "A1"), (71, 0), (626, 1), (73, 1), (11, "o1"), (54, "1"), (55, "BTC-USD"),
    (53, 1), (6, "1"), (75, "20260101"), (60, "20260101-00:00:00"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "body", "own"),
    [("s", _CROSS, b"X1"), ("J", _ALLOC, b"A1")],
    ids=["NewOrderCross-CrossID", "AllocationInstruction-AllocID"],
)
def test_a_business_reject_names_a_cross_or_allocations_own_id(
    harness: Harness, kind: str, body: Body, own: bytes
) -> None:
    """Scenario: ALICE sends a NewOrderCross (s: CrossID 548 X1, sides c1 and c2) or an
    AllocationInstruction (J: AllocID 70 A1, one NoOrders entry o1); the gateway takes
    neither. Expected: 380=3 with 379 the message's own id, X1 or A1 (reject_ref.py: "a
    list's ListID (not an order's ClOrdID inside it)"). Was (fixed): 379=c2, the last side's
    ClOrdID, and 379=o1, an order's ClOrdID inside the allocation."""
    _check(harness, kind, body, [(b"j", b"3", own)])


# -- sound ------------------------------------------------------------------------------------

_OUTBOUND: dict[str, tuple[str, Body, bytes]] = {
    "8-parties": ("8", [
        (37, "1"), (11, "o1"), (17, "e1"), (453, 1), (448, "P"), (447, "D"), (452, 1),
        (150, "0"), (39, "0"), (55, "BTC-USD"), (54, "1"), (151, "1"), (14, "0"), (6, "0"),
    ], b"e1"),
    "9": ("9", [(37, "1"), (11, "c"), (41, "o"), (39, "8"), (434, "1")], b"c"),
    "r-affected": ("r", [
        (11, "m"), (37, "1"), (530, "7"), (531, "7"), (534, 1), (41, "a"), (535, "x"),
    ], b"m"),
    "f-SecurityID": ("f", [(324, "q"), (55, "BTC-USD"), (48, "XBT"), (22, "8"), (326, 2)], b"q"),
    "BF": ("BF", [(923, "u"), (553, "ALICE"), (926, 1)], b"u"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_OUTBOUND))
def test_sound_outbound_types_valid_by_the_spec_are_business_rejected(
    harness: Harness, case: str
) -> None:
    kind, body, own = _OUTBOUND[case]
    _check(harness, kind, body, [(b"j", b"3", own)])


def _old_dictionary() -> ModuleType:
    try:
        source = subprocess.run(
            ["git", "show", "3b0c6b2:procs/gateway/dictionary.py"],
            cwd=_ROOT, capture_output=True, check=True, text=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history here")
    name = "procs.gateway._dictionary_3b0c6b2"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    old = importlib.util.module_from_spec(spec)
    old.__file__ = dictionary.__file__  # its fix44.json
    sys.modules[name] = old
    try:
        exec(compile(source, dictionary.__file__, "exec"), old.__dict__)
    finally:
        del sys.modules[name]
    return old


def test_sound_tables_of_the_types_taken_are_as_before() -> None:
    old = _old_dictionary()
    for kind in (*dictionary.ADMIN, *dictionary.INBOUND_APP):
        new_spec, old_spec = dictionary.MESSAGES[kind], old.MESSAGES[kind]
        assert dictionary._ALLOWED[kind] == old._ALLOWED[kind], kind
        assert dictionary._GROUP_MEMBERS[kind] == old._GROUP_MEMBERS[kind], kind
        assert new_spec.required == old_spec.required, kind
        assert new_spec.optional == old_spec.optional, kind
        assert [g.count_tag for g in new_spec.groups] == [g.count_tag for g in old_spec.groups]
        assert [g.tags for g in new_spec.groups] == [g.tags for g in old_spec.groups], kind
    assert dictionary.UNSUPPORTED_ORDER_FIELDS == old.UNSUPPORTED_ORDER_FIELDS
    assert dictionary.UNSUPPORTED_ORDER_GROUPS == old.UNSUPPORTED_ORDER_GROUPS
    assert dictionary.KNOWN_TYPES == old.KNOWN_TYPES
    assert dictionary.HEADER == old.HEADER


def test_sound_judged_at_is_the_routers_former_judgement() -> None:
    kinds = (OrdType.LIMIT, OrdType.MARKET, OrdType.STOP, OrdType.STOP_LIMIT)
    for side in (Side.BUY, Side.SELL):
        for kind in kinds:
            for price, stop in ((0, 0), (0, 2000), (1500, 2000), (2500, 2000), (1000, 0)):
                before = price
                if side == Side.SELL and kind in (OrdType.STOP, OrdType.STOP_LIMIT):
                    before = max(price, stop)
                assert Market.judged_at(side, kind, price, stop) == before, (side, kind)
