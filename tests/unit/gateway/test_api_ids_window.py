"""The REST API's clientOrderIds have a window of their own (``api_ids.log``), beside the FIX
ClOrdIDs' (``clordids.log``): REST load no longer rolls the FIX duplicate check's window
(review 73's documented limit), the API's ids survive a restart in their own file and are
shipped to a standby, and an id a build before the split kept in ``clordids.log`` still
counts as used."""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.topology import gateway_dir
from procs.gateway.clordids import API_IDS, SeenLog, api_digest
from procs.replica.files import SHIPPABLE, shipped_files
from tests.unit.gateway.harness import Harness, close_all, settled
from tests.unit.gateway.rest_rig import ALICE, LIMIT, client, rest_exchange
from tests.unit.gateway.test_gateway_restart import crash
from tests.unit.gateway.test_review18_rest_restart import gateway, run_rest, url_of

ORDER = "/api/v1/order"
SELL = {**LIMIT, "side": "SELL"}


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def _gw_dir(h: Harness) -> Path:
    return gateway_dir(h.cfg, h.cfg.gateways[0].name)


def test_the_apis_ids_are_kept_apart_and_survive_a_restart(harness: Harness) -> None:
    answers: list[tuple[int, dict[str, object]]] = []

    async def body(h: Harness) -> None:
        gw = gateway(h)
        alice = await client(url_of(h), "ALICE", "alice-pw")
        bob = await client(url_of(h), "BOB", "bob-pw")
        await bob.call("POST", ORDER, **SELL, price="300.00", quantity="0.30")
        mine = await alice.call(
            "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", newClientOrderId="w-1"
        )
        assert mine["status"] == "FILLED", mine
        await settled(lambda: not gw.entry.outgoing and not gw._unpublished)
        assert gw.api is not None and gw.api.core.seen is not None
        assert api_digest(ALICE, "w-1") in gw.api.core.seen
        assert api_digest(ALICE, "w-1") not in gw.entry.seen  # the FIX window is FIX's
        await alice.close()
        await bob.close()
        await crash(h)
        await close_all()
        await h.start()
        again = gateway(h)
        assert again.api is not None
        again.api.core.keep_done = 1
        alice = await client(url_of(h), "ALICE", "alice-pw")
        try:
            for _ in range(2):  # w-1 is forgotten
                await alice.call(
                    "POST", ORDER, **LIMIT, price="300.00", quantity="0.10", timeInForce="IOC"
                )
            answers.append(
                await alice.request("GET", ORDER, symbol="BTC-USD", origClientOrderId="w-1")
            )
        finally:
            await alice.close()

    run_rest(harness, body)
    status, got = answers[0]
    assert (status, got["code"]) == (504, -1007), got
    assert (_gw_dir(harness) / API_IDS).stat().st_size >= 8


def test_an_api_id_an_older_build_kept_with_the_fix_ids_is_still_used(harness: Harness) -> None:
    """A build before the split noted the API's ids in ``clordids.log``: still asked."""
    directory = _gw_dir(harness)
    old = SeenLog(directory / "clordids.log")
    old.load()
    old.append(array("Q", [api_digest(ALICE, "old-1")]))
    old.close()
    answers: list[tuple[int, dict[str, object]]] = []

    async def body(h: Harness) -> None:
        alice = await client(url_of(h), "ALICE", "alice-pw")
        try:
            answers.append(
                await alice.request("GET", ORDER, symbol="BTC-USD", origClientOrderId="old-1")
            )
            answers.append(
                await alice.request("GET", ORDER, symbol="BTC-USD", origClientOrderId="never")
            )
        finally:
            await alice.close()

    run_rest(harness, body)
    (s1, old_one), (s2, never) = answers
    assert (s1, old_one["code"]) == (504, -1007), old_one
    assert (s2, never["code"]) == (400, -2013), never


def test_a_standby_is_shipped_the_apis_ids(harness: Harness) -> None:
    name = harness.cfg.gateways[0].name
    assert f"{name}/{API_IDS}" in shipped_files(harness.cfg)
    assert SHIPPABLE.fullmatch(f"{name}/{API_IDS}")
    assert not SHIPPABLE.fullmatch(f"{name}/api_ids.logx")
