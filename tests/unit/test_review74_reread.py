"""A hostile review (the 74th) of bb074a8 and the parts of a807c26 it builds on: a REST
clientOrderId's digest noted when the exchange takes its order (``rest_orders.py``
``_accepted`` -> ``note_used``; ``used``, ``unknown``), noted again from the order log at a
restart (``rest_order_log.py`` ``restore``), a cancel, amend or query by a forgotten id
answered 504 -1007 through ``RestOrders.unknown`` (``rest.py`` ``cancel_order``,
``query_order``; ``rest_amend.py``), and the audit log leaving the mode of a file of another
owner as it is (``audit.py`` ``_open``); with the README text of the day (82bd4da..HEAD).

What holds: a new order answered 504 stays in ``requests`` (``abandon`` drops balance
requests only), so its Accepted, however late, still notes its id; an order restored
pending gets its request back and is noted by its Accepted likewise; an order accepted and
done in one batch is noted by the Accepted, which comes first; a refused order is never
noted while the gateway runs; ``note_used`` and ``used`` with no ``seen`` (only the unit
rigs: a gateway always wires ``entry.seen``) note nothing and say -2013; the digests noted
from events reach ``clordids.log`` at the next pump (``publish`` keeps ``seen`` each pass),
and a crash before that is mended by ``restore``. The audit log catches only ``fchmod``'s
``PermissionError`` (EPERM: not the owner, or an append-only file, which it may append to);
a directory or a file it may not write fails at ``os.open`` as before (the reopen says so
once and writes on to the old file). The amend's new test (``oid is None and client_id and
order is None``) leaves an order found on another symbol -2013 naming the symbol. An order
placed through another gateway has no clientOrderId here at all (the database keeps none):
"used here" is this gateway's, as the README says. The README's sections of the day (the
store trim withdrawn, the archive per instance, ``topology.journal_archive_dir``) hold.

Faults, each pinned below by a test that failed on the code it was written against (its
docstring says what is wrong and what a correct exchange does) and passes since its fix
(the same session's commits):

1. A new order the matcher refuses (NO_LIQUIDITY, a post-only that would take, a price off
   the collar: ``order_events.reject`` carries the router's order id) is logged REJECTED
   with that id (``end_of_batch`` touches it again after ``_rejected`` marked it gone), and
   ``restore`` notes every entry with an order id before it looks at the status
   (``rest_order_log.py:82-83``): after a restart its id is "used", and a query by it
   answers 504 "status unknown here ... find it in allOrders" for an order that never
   existed, review 73's first fault again.
2. An order restored pending whose Accepted went with the rings is taken as accepted by
   ``reconcile`` from the books (``rest_order_log.py:122-129``): its order id is set, its
   digest never noted (the only other path to ``note_used`` is the Accepted it will not
   get), so once it is done and forgotten its id is -2013 "does not exist".
3. ``GET order`` by the ``origClientOrderId`` of an order this gateway remembers, with
   another ``symbol``, answers 504 "was used here and its order is no longer remembered:
   its status is unknown" (``rest.py:531-533``): the order is remembered and its status
   known; the amend (``rest_amend.py:61``) answers -2013 naming the symbol.
4. The OpenAPI document's ``cancelOrder`` and ``amendOrder`` list 504 as "No answer from the
   exchange in time: the order or cancel may still execute, ask for its status", and say
   nothing of the forgotten id's 504 that bb074a8 gave them (``openapi.py:301-313``; only
   ``queryOrder`` says it): for a cancel by a forgotten id nothing was sent, nothing may
   still execute, and asking for its status by that id answers the same 504.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.common.records import NewOrder, OrderDone, Rejected
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason, Side
from procs.core.resting import RestingOrder
from procs.gateway.audit import AuditLog
from procs.gateway.clordids import Generations
from procs.gateway.openapi import V1, document
from procs.gateway.order_log import Recovered, plain
from procs.gateway.rest import RestApi
from procs.gateway.rest_params import new_order
from procs.gateway.rest_params import not_found as rp_not_found
from tests.unit.gateway import rest_rig
from tests.unit.gateway.harness import Harness, close_all, settled
from tests.unit.gateway.harness import config as harness_config
from tests.unit.gateway.rest_rig import LIMIT, client, rest_exchange, run
from tests.unit.gateway.test_gateway_restart import crash
from tests.unit.gateway.test_rest_orders import ALICE, GW, SYM, accepted, core, limit
from tests.unit.gateway.test_review18_rest_restart import gateway, run_rest, url_of

ORDER = "/api/v1/order"
Answer = tuple[int, Any]
SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


@pytest.fixture
def two_symbols(
    instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Harness]:
    """``rest_rig.rest_exchange`` with a second symbol, XBT-USD (id 2, the same rules), on
    the same matcher (as ``test_review29_rest_views.two_symbols``, without a database)."""
    plain_config = harness_config  # what rest_rig.rest_exchange calls

    def config(*args: Any, **kw: Any) -> RingexConfig:
        cfg = plain_config(*args, **kw)
        xbt = msgspec.structs.replace(cfg.symbols[0], name="XBT-USD", id=2)
        m1 = msgspec.structs.replace(cfg.matchers[0], symbols=["BTC-USD", "XBT-USD"])
        return msgspec.structs.replace(cfg, symbols=[cfg.symbols[0], xbt], matchers=[m1])

    monkeypatch.setattr(rest_rig, "config", config)
    yield from rest_exchange(instance, tmp_path)


def _noted_core() -> Any:
    c, out = core()
    c.seen = Generations(100)
    return c, out


def _placed(c: Any, out: list[Any], name: str, price: str = "100.00") -> NewOrder:
    req = new_order({**limit("BUY", price, "1"), "newClientOrderId": name}, c.instruments)
    c.new_order(req, ALICE, 1, 5)
    cmd = out[-1]
    assert isinstance(cmd, NewOrder)
    return cmd


# -- faults -------------------------------------------------------------------------------------


def test_a_refused_orders_id_is_not_status_unknown_after_a_restart(harness: Harness) -> None:
    """BOB rests a sell at 300.00; ALICE sends a LIMIT_MAKER buy ``pm-1`` at 300.00: the
    matcher refuses it (-2010, POST_ONLY_WOULD_TAKE), and ``order_events.reject`` carries the
    order id the router gave it. ``_rejected`` logs the order gone, but ``end_of_batch``
    then clears its ``ref`` and touches it, so the order log's last word on it is the
    REJECTED entry with that id; a query at once says -2013, right. The gateway restarts (a
    crash here; any restart before the next compaction, as ``OrderLog.close`` compacts
    nothing): ``restore`` (``rest_order_log.py:82-83``) notes the id of every
    entry with an order id before it checks the status, so ``pm-1`` is "used", and the
    query answers 504 -1007 "was used here ... its status is unknown here; find it in
    allOrders", for an order that never existed and that allOrders never lists (review
    73's first fault, through the restore).

    A correct exchange notes a restored order's id only if the exchange took it (not
    REJECTED), and logs no refused order after its GONE. Expected 400 -2013 after the
    restart as before it; actual 504 -1007."""
    answers: list[Answer] = []

    async def body(h: Harness) -> None:
        gw = gateway(h)
        alice = await client(url_of(h), "ALICE", "alice-pw")
        bob = await client(url_of(h), "BOB", "bob-pw")
        await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.30")
        status, refused = await alice.request(
            "POST", ORDER, **{**LIMIT, "type": "LIMIT_MAKER"}, price="300.00",
            quantity="0.10", newClientOrderId="pm-1",
        )  # fmt: skip
        assert (status, refused["code"]) == (400, -2010), refused
        assert "POST_ONLY_WOULD_TAKE" in refused["msg"], refused  # the matcher's, with an id
        before = await alice.request("GET", ORDER, symbol="BTC-USD", origClientOrderId="pm-1")
        assert (before[0], before[1]["code"]) == (400, -2013), before
        await settled(lambda: not gw.entry.outgoing and not gw._unpublished)
        await alice.close()
        await bob.close()
        await crash(h)
        await close_all()
        await h.start()
        alice = await client(url_of(h), "ALICE", "alice-pw")
        try:
            answers.append(
                await alice.request("GET", ORDER, symbol="BTC-USD", origClientOrderId="pm-1")
            )
        finally:
            await alice.close()

    run_rest(harness, body)
    status, got = answers[0]
    assert (status, got["code"]) == (400, -2013), got


def test_an_order_the_books_show_accepted_has_its_id_noted() -> None:
    """A full restart over new rings: ALICE's ``mine-1`` was restored pending (order id 0,
    its request back), and its Accepted went with the old rings. ``reconcile`` finds it in
    the book and takes it as accepted (``rest_order_log.py:122-129``: order id, NEW, its
    request dropped), but never calls ``note_used``; its Accepted, the only other path to
    it since bb074a8, never comes. The exchange took the order; once it is done and past
    ``keep_done``, a query by ``mine-1`` is -2013 "does not exist" (the answer 87531a3
    removed for a taken order), until the next restart's ``restore`` notes it.

    A correct ``reconcile`` notes the id of a pending order it finds in a book. Expected
    ``used`` True after the reconcile; actual False."""
    c, out = _noted_core()
    cmd = _placed(c, out, "mine-1")
    entries = plain(c.take_changes())
    restored, _ = _noted_core()
    recovered = Recovered()
    for entry in entries:
        recovered.apply(list(entry))
    restored.restore(recovered.api_orders)
    assert not restored.used(ALICE, "mine-1")  # pending: not taken yet
    resting = {
        cmd.client_ref: RestingOrder(
            order_id=7, account=ALICE, side=Side.BUY, price=10_000, leaves=100, filled=0,
            arrival=1, gateway=GW, session=1, client_ref=cmd.client_ref,
        )
    }  # fmt: skip
    restored.reconcile(resting, {SYM.id})
    found = restored.order(ALICE, 7)
    assert found is not None and found.client_order_id == "mine-1"  # taken, as the books say
    assert restored.used(ALICE, "mine-1")


def test_a_query_on_another_symbol_does_not_say_the_order_is_forgotten(
    two_symbols: Harness,
) -> None:
    """ALICE's ``q-1`` rests on BTC-USD (accepted: its id noted). She asks ``GET order``
    with ``symbol=XBT-USD&origClientOrderId=q-1`` (a script's wrong symbol): ``named_order``
    finds the order, the symbol does not match, and ``query_order`` falls through to
    ``core.unknown`` (``rest.py:531-533``): 504 -1007 "origClientOrderId=q-1 was used here
    and its order is no longer remembered: its status is unknown here; find it in
    allOrders". The order is remembered, open, its status known; a script told 504 retries
    or searches allOrders for XBT-USD, where it is not. The amend of the same names the
    symbol and says -2013 (``rest_amend.py:61-64``: ``order is None`` only).

    A correct exchange answers an order known here on another symbol as the amend does:
    400 -2013 "order does not exist: origClientOrderId=q-1 (symbol=XBT-USD)". Expected 400
    -2013; actual 504 -1007."""
    answers: dict[str, Answer] = {}

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            placed = await alice.call(
                "POST", ORDER, **LIMIT, price="10.00", quantity="0.10", newClientOrderId="q-1"
            )
            assert placed["status"] == "NEW", placed
            answers["get"] = await alice.request(
                "GET", ORDER, symbol="XBT-USD", origClientOrderId="q-1"
            )
            answers["put"] = await alice.request(
                "PUT", ORDER, symbol="XBT-USD", origClientOrderId="q-1", quantity="0.20"
            )
        finally:
            await alice.close()

    run(two_symbols, scenario)
    status, put = answers["put"]
    assert (status, put["code"]) == (400, -2013), put  # holds: the amend names the symbol
    status, got = answers["get"]
    assert (status, got["code"]) == (400, -2013), got


def test_the_openapi_cancel_and_amend_say_what_a_forgotten_ids_504_means() -> None:
    """bb074a8 gave ``DELETE`` and ``PUT /api/v1/order`` by a forgotten
    ``origClientOrderId`` a 504 (-1007). Their operations (``openapi.py:301-313``) list 504
    through the shared response, "No answer from the exchange in time: the order or cancel
    may still execute, ask for its status", and nothing else: for a cancel by a forgotten id
    no cancel was sent, nothing may still execute, and asking for the status by that id
    answers the same 504. ``queryOrder`` alone says "504 (-1007): an origClientOrderId used
    here whose order is no longer remembered".

    A correct document says it for the cancel and the amend too (and that allOrders finds
    the order). Expected: both operations' text names it; actual neither."""
    cfg = harness_config("t", Path("/nonexistent"))
    paths = document(cfg)["paths"][f"{V1}/order"]
    for method in ("delete", "put"):
        op = paths[method]
        text = f"{op['summary']} {op.get('description', '')}"
        assert "no longer remembered" in text, (method, text)


# -- what holds ---------------------------------------------------------------------------------


def test_a_504d_new_orders_late_accepted_notes_its_id() -> None:
    """(Holds: the request of a new order answered 504 stays, so its late Accepted notes
    the id; an order accepted and done in one batch is noted; a refused one is not.)"""
    c, out = _noted_core()
    late = _placed(c, out, "late-1")
    c.abandon(late.client_ref)  # the HTTP request gave up: 504
    c.end_of_batch()
    c.process(accepted(late, order_id=7, seq=40))
    c.end_of_batch()
    assert c.used(ALICE, "late-1")
    ioc = _placed(c, out, "ioc-1")
    c.process(accepted(ioc, order_id=8, seq=41))
    c.process(OrderDone(41, 0, GW, 1, ioc.client_ref, ALICE, SYM.id, 8, DoneReason.CANCELLED, 0, 0))
    c.end_of_batch()
    assert c.used(ALICE, "ioc-1")
    refused = _placed(c, out, "no-1")
    c.process(Rejected(42, 0, GW, 1, refused.client_ref, ALICE, SYM.id, 9, ResultCode.NO_LIQUIDITY))
    c.end_of_batch()
    assert not c.used(ALICE, "no-1")
    bare, bare_out = core()  # no ``seen``: nothing noted, -2013
    cmd = _placed(bare, bare_out, "x-1")
    bare.process(accepted(cmd, order_id=10, seq=43))
    assert not bare.used(ALICE, "x-1")
    assert bare.unknown(ALICE, "x-1").code == rp_not_found("").code


def test_the_audit_log_masks_only_fchmods_eperm(tmp_path: Path) -> None:
    """(Holds: a directory where ``audit.log`` should be, or a file the gateway may not
    write, fails at ``os.open``, before the ``fchmod`` whose EPERM is taken.)"""
    where = tmp_path / "gw" / "audit.log"
    where.mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        AuditLog(where)
    other = tmp_path / "gw2" / "audit.log"
    other.parent.mkdir()
    other.write_bytes(b"")
    other.chmod(0o400)
    if os.geteuid() != 0:  # root writes it all the same
        with pytest.raises(PermissionError) as info:
            AuditLog(other)
        assert info.value.errno == errno.EACCES
