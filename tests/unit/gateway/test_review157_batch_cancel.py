"""Review 157: a hostile review of ``DELETE /api/v1/batchOrders`` (``rest_cancels.py``), the
shared batch machinery of ``rest.py`` (``expect``, ``settle``, ``drop``, ``answers``,
``charge_batch``) and the single ``DELETE /api/v1/order`` after its move, over real HTTP
against the real gateway, router and matcher of ``rest_rig`` (two symbols here).

Faults found (each a strict xfail when written, asserting the correct behaviour; both fixed
since, the same session: the batch names every order before it sends any cancel, with no
await between those, and the single cancel names the symbol as configured again):

1. procs/gateway/rest_cancels.py:71-79 (``batch_cancel``): each order's answer future is
   registered (``expect``: ``api.waiters``, ``api.deadlines``) in the loop, before
   ``answers`` and its ``finally`` are entered, and the loop awaits between orders
   (``cancel`` -> ``named_order`` -> the history database, for a client id this gateway does
   not know). A handler cancelled there (a shutdown) leaves the earlier orders' futures in
   both: review 156's fifth fault, fixed for the waits, back in the loop.
2. procs/gateway/rest_cancels.py:88 (``Cancels.cancel``): the single ``DELETE order``'s -2013
   for a client id known on another symbol names the symbol as sent (``params["symbol"]``,
   ``xbt-usd``); before the move (``rest.py``'s ``cancel_order``) it named ``sym.name``
   (``XBT-USD``), as ``GET order`` still does.

Probed and held: ids repeated in one list (the order cancelled once, the repeat "too late",
one CANCELED report on the stream); another account's orders, open or ended, by id or by
client id (never cancelled, refused exactly as an unknown id is); an own order named on the
other symbol (not cancelled); ids 0, negative, past int64 and past uint64 (a per-order 400,
the others cancelled); floats, booleans, strings, nested arrays, null (the whole request 400,
nothing cancelled); JSON whitespace and escapes; client ids empty, 65 characters, with NUL,
quotes or non-ASCII (a per-order 400, no 500); a client id the gateway forgot (-1007 in the
batch as the single route's 504 -1007); an order placed and not acknowledged yet (refused,
then cancelled once answered); an order filled while its cancel waits ("too late", FILLED);
a paused pipeline (a 504 entry each, the cancels executed after, nothing left waiting); a
client gone mid-wait on either lane (cancels executed, nothing leaks); the fast lane, aiohttp
(``Expect: 100-continue``), a form body, a JSON body, an escaped and an unescaped query
agree; a stopping gateway still takes batch and single cancels; a 429 cancels nothing; the
OpenAPI parameters (names, the one required, the lists' limits and items) match what the
server takes, and the answers fit the documented schema (a cancel of an order not followed
here too); the single route's unknown, too late, another account's, by client id and
forgotten answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema_rs
import msgspec
import psycopg
import pytest
from multidict import CIMultiDict, CIMultiDictProxy

from config.schema import DatabaseConfig, RingexConfig, SymbolConfig
from procs.gateway import api_errors as codes
from procs.gateway import rest_params as rp
from procs.gateway.fast_request import FastRequest
from procs.gateway.instruments import MAX_INT64
from procs.gateway.limits import RateLimiter
from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError, RestClient
from tests.unit.gateway import unfiled_rig
from tests.unit.gateway.harness import Harness, settled
from tests.unit.gateway.rest_rig import (
    ALICE,
    bid_elsewhere,
    client,
    exchange,
    push_out,
    request,
    rest_exchange,
    run,
    statuses,
    stream_messages,
)

BATCH, ORDER = "/api/v1/batchOrders", "/api/v1/order"
BID: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT", "quantity": "0.10"}
ASK = {**BID, "side": "SELL"}
FORM = "application/x-www-form-urlencoded"


def _with_xbt(cfg: RingexConfig) -> RingexConfig:
    """A second symbol, XBT-USD, on the same matcher; private streams queue 64."""
    xbt = SymbolConfig(name="XBT-USD", id=2, price_decimals=1, qty_decimals=3, tick=1, base="BTC")
    m1 = msgspec.structs.replace(cfg.matchers[0], symbols=["BTC-USD", "XBT-USD"])
    gw = cfg.gateways[0]
    assert gw.rest is not None
    gw = msgspec.structs.replace(gw, rest=msgspec.structs.replace(gw.rest, stream_queue=64))
    return msgspec.structs.replace(
        cfg, symbols=[*cfg.symbols, xbt], matchers=[m1], gateways=[gw, *cfg.gateways[1:]]
    )


def _exchange(instance: str, tmp_path: Path, db: DatabaseConfig) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path, db, _with_xbt)


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from _exchange(instance, tmp_path, DatabaseConfig(enabled=False))


@pytest.fixture
def with_history(instance: str, tmp_path: Path, dsn: str) -> Iterator[Harness]:
    yield from _exchange(instance, tmp_path, DatabaseConfig(dsn=dsn))


async def _bids(c: RestClient, *cids: str, price: str = "100.00") -> list[int]:
    """ALICE's resting bids, one per client id: their order ids."""
    placed = await c.batch_orders([{**BID, "price": price, "newClientOrderId": i} for i in cids])
    assert all(p["status"] == "NEW" for p in placed), placed
    return [p["orderId"] for p in placed]


async def _cancel(c: RestClient, **params: Any) -> tuple[int, Any]:
    return await c.request("DELETE", BATCH, **{"symbol": "BTC-USD", **params})


async def _raw(
    c: RestClient, url: str, query: str, body: bytes, *extra: bytes, timeout_s: float = 5.0
) -> tuple[int, Any, bytes]:
    """A signed DELETE with ``query`` as written (no escaping) on a connection of its own:
    (last status, decoded JSON answer or None, the raw answer)."""
    signed = c.headers("DELETE", BATCH, query, body)
    head = [f"{k}: {v}".encode() for k, v in signed.items()]
    head += [b"Connection: close", b"Content-Length: %d" % len(body), *extra]
    target = BATCH + (f"?{query}" if query else "")
    raw = await exchange(
        int(url.rsplit(":", 1)[1]),
        request(f"DELETE {target} HTTP/1.1".encode(), *head, body=body),
        timeout_s,
    )
    seen = statuses(raw)
    payload = raw.rsplit(b"\r\n\r\n", 1)[-1] if seen else b""
    answer = json.loads(payload) if payload.startswith((b"[", b"{")) else None
    return (seen[-1] if seen else 0), answer, raw


async def _open(c: RestClient) -> list[int]:
    return sorted(o["orderId"] for o in await c.call("GET", "/api/v1/openOrders"))


def _quiet(api: RestApi) -> bool:
    return not api.waiters and not len(api.deadlines) and not api.core.requests


def _shape(answers: list[dict[str, Any]]) -> list[Any]:
    return [a.get("status") or a["code"] for a in answers]


# -- what the lists name ------------------------------------------------------------------------


def test_a_repeated_id_cancels_once_and_the_stream_says_so_once(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            a, b = await _bids(alice, "r1", "r2")
            async with alice.session.ws_connect(alice.stream_url()) as ws:
                await stream_messages(ws, 0.3)  # the snapshot
                by_id = await alice.batch_cancel("BTC-USD", [a, a, b])
                c, d = await _bids(alice, "r3", "r4")
                status, by_cid = await _cancel(alice, origClientOrderIdList='["r3","r3","r4"]')
                events = await stream_messages(ws, 0.5)
            assert status == 200 and _shape(by_id) == _shape(by_cid) == [
                "CANCELED", codes.CANCEL_REJECTED, "CANCELED"
            ], (by_id, by_cid)  # fmt: skip
            assert f"orderId={a} is CANCELED: too late" in by_id[1]["msg"], by_id
            assert [x["orderId"] for x in (by_id[0], by_id[2], by_cid[0], by_cid[2])] == [
                a, b, c, d
            ]  # fmt: skip
            ended = [
                (e["data"]["orderId"], e["data"]["status"])
                for e in events
                if e["event"] == "executionReport" and e["data"]["status"] == "CANCELED"
            ]
            assert sorted(ended) == sorted((x, "CANCELED") for x in (a, b, c, d)), events
            assert await _open(alice) == [] and _quiet(api)

    run(harness, scenario)


def test_another_accounts_orders_are_refused_as_unknown_ones_are(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with unfiled_rig.users(url) as (alice, bob):
            (mine,) = await _bids(alice, "m1", price="90.00")
            (rests,) = await bob.batch_orders(
                [{**ASK, "price": "400.00", "newClientOrderId": "b1"}]
            )
            (ended,) = await bob.batch_orders([{**ASK, "price": "90.00", "newClientOrderId": "b2"}])
            assert ended["status"] == "FILLED", ended
            unknown = rests["orderId"] + 1_000
            ids = [rests["orderId"], ended["orderId"], unknown]
            answers = await alice.batch_cancel("BTC-USD", ids)
            pairs = zip(answers, ids, strict=True)
            msgs = [(x["code"], x["msg"].replace(str(i), "N")) for x, i in pairs]
            assert msgs == [(codes.CANCEL_REJECTED, "cancel rejected: unknown order orderId=N")] * 3
            status, by_cid = await _cancel(alice, origClientOrderIdList='["b1","b2","never"]')
            named = zip(by_cid, ["b1", "b2", "never"], strict=True)
            texts = [(x["code"], x["msg"].replace(c, "C")) for x, c in named]
            assert status == 200 and len(set(texts)) == 1, by_cid
            assert texts[0][0] == codes.NO_SUCH_ORDER, by_cid
            for name, value in (("orderId", rests["orderId"]), ("origClientOrderId", "b1")):
                named_by: dict[str, Any] = {name: value}
                one, single = await alice.request("DELETE", ORDER, symbol="BTC-USD", **named_by)
                assert one == 400, single
            assert await _open(bob) == [rests["orderId"]]  # bob's order stands
            assert ended["orderId"] not in await _open(alice) and mine  # (filled by b2)

    run(harness, scenario)


def test_an_own_order_named_on_the_other_symbol_is_not_cancelled(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            (a,) = await _bids(alice, "x1")
            (refused,) = await alice.batch_cancel("XBT-USD", [a])
            assert refused["code"] == codes.CANCEL_REJECTED, refused
            _, (by_cid,) = await _cancel(alice, symbol="XBT-USD", origClientOrderIdList='["x1"]')
            assert by_cid["code"] == codes.NO_SUCH_ORDER, by_cid
            assert "(symbol=XBT-USD)" in by_cid["msg"], by_cid
            assert await _open(alice) == [a]

    run(harness, scenario)


def test_the_single_cancel_names_the_symbol_as_before_its_move(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            await _bids(alice, "y1")
            for method in ("GET", "DELETE"):
                status, body = await alice.request(
                    method, ORDER, symbol="xbt-usd", origClientOrderId="y1"
                )
                assert status == 400 and "(symbol=XBT-USD)" in body["msg"], (method, body)

    run(harness, scenario)


# -- hostile lists ------------------------------------------------------------------------------


def test_hostile_ids_are_refused_one_by_one_or_whole(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            a, b, c = await _bids(alice, "h1", "h2", "h\u0041")
            text = f"[ 0,-1, {MAX_INT64 + 1},\n{2**64}, {10**70}, {a}\t]"
            status, answers = await _cancel(alice, orderIdList=text)
            assert status == 200 and _shape(answers) == [codes.ILLEGAL_PARAM] * 5 + ["CANCELED"]
            assert "outside 1..9223372036854775807" in answers[3]["msg"], answers[3]
            assert "71 characters" in answers[4]["msg"], answers[4]
            bad = ["1.0", "1e2", "true", '"1"', "[1]", "null", "{}"]
            for whole in [*(f"[{b},{item}]" for item in bad), "null", "{}", f"{b}", f"[{b}"]:
                status, refused = await _cancel(alice, orderIdList=whole)
                assert status == 400 and refused["code"] == codes.ILLEGAL_PARAM, (whole, refused)
            odd = ["", "x" * 65, "a\u0000b", 'q"q', "\u00e9t\u00e9", "hA", "h2 "]
            status, answers = await _cancel(alice, origClientOrderIdList=json.dumps(odd))
            assert status == 200 and _shape(answers) == [
                codes.ILLEGAL_PARAM, codes.ILLEGAL_PARAM, *[codes.NO_SUCH_ORDER] * 3,
                "CANCELED", codes.NO_SUCH_ORDER,
            ], answers  # fmt: skip
            assert answers[5]["orderId"] == c
            status, answers = await _cancel(alice, origClientOrderIdList='["\\u0068\\u0032"]')
            assert status == 200 and answers[0]["orderId"] == b, answers  # escaped "h2"
            assert await _open(alice) == [] and _quiet(api)

    run(harness, scenario)


def test_a_forgotten_client_id_is_status_unknown_in_a_batch_as_alone(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            api.core.keep_done = 1
            ioc = {**BID, "price": "10.00", "timeInForce": "IOC", "newClientOrderId": "gone"}
            (old,) = await alice.batch_orders([ioc])
            await push_out(url)
            (live,) = await _bids(alice, "kept")
            status, answers = await _cancel(alice, origClientOrderIdList='["gone","kept"]')
            assert status == 200 and _shape(answers) == [codes.TIMEOUT, "CANCELED"], answers
            assert "no longer remembered" in answers[0]["msg"], answers[0]
            status, single = await alice.request(
                "DELETE", ORDER, symbol="BTC-USD", origClientOrderId="gone"
            )
            assert (status, single["code"]) == (504, codes.TIMEOUT), single
            (by_id,) = await alice.batch_cancel("BTC-USD", [old["orderId"]])
            # by its id the unfiled index still has it (review 222): ended, said so
            assert "is EXPIRED: too late to cancel" in by_id["msg"], by_id
            assert live == answers[1]["orderId"] and _quiet(api)

    run(harness, scenario)


# -- orders in flight ---------------------------------------------------------------------------


def test_a_pending_order_is_refused_then_cancelled_once_answered(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            harness.pause()
            placing = asyncio.ensure_future(
                alice.call("POST", ORDER, **BID, price="100.00", newClientOrderId="p1")
            )
            await settled(lambda: len(api.waiters) == 1)
            status, (refused,) = await _cancel(alice, origClientOrderIdList='["p1"]')
            assert status == 200 and refused["code"] == codes.CANCEL_REJECTED, refused
            assert "has not answered it yet" in refused["msg"], refused
            harness.resume()
            placed = await placing
            status, (done,) = await _cancel(alice, origClientOrderIdList='["p1"]')
            assert (done["orderId"], done["status"]) == (placed["orderId"], "CANCELED"), done

    run(harness, scenario)


def test_an_order_filled_while_its_cancel_waits_is_too_late(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with unfiled_rig.users(url) as (alice, bob):
            a, b = await _bids(alice, "f1", "f2", price="100.00")
            harness.pause()
            sell = {**ASK, "price": "100.00", "timeInForce": "IOC"}
            selling = asyncio.ensure_future(bob.call("POST", ORDER, **sell))
            await settled(lambda: len(api.waiters) == 1)
            cancelling = asyncio.ensure_future(alice.batch_cancel("BTC-USD", [a, b]))
            await settled(lambda: len(api.waiters) == 3)
            harness.resume()
            sold, answers = await asyncio.gather(selling, cancelling)
            assert sold["status"] == "FILLED", sold
            assert _shape(answers) == [codes.CANCEL_REJECTED, "CANCELED"], answers
            assert f"orderId={a} is FILLED: too late to cancel" in answers[0]["msg"], answers
            assert await _open(alice) == [] and _quiet(api)

    run(harness, scenario)


def test_a_paused_exchange_gives_a_504_each_then_cancels(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            ids = await _bids(alice, "t1", "t2")
            api.rest = msgspec.structs.replace(api.rest, order_timeout_s=0.3)
            harness.pause()
            answers = await alice.batch_cancel("BTC-USD", [*ids, 0])
            assert _shape(answers) == [codes.TIMEOUT, codes.TIMEOUT, codes.ILLEGAL_PARAM]
            assert not api.waiters and not len(api.deadlines) and len(api.core.requests) == 2
            harness.resume()
            await settled(lambda: not api.core.requests)
            assert await _open(alice) == [] and _quiet(api)

    run(harness, scenario)


def test_a_client_gone_mid_wait_leaks_nothing_on_either_lane(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            ids = await _bids(alice, "g1", "g2", "g3", "g4")
            harness.pause()
            for pair, extra in ((ids[:2], ()), (ids[2:], (b"Expect: 100-continue",))):
                query = f"symbol=BTC-USD&orderIdList=[{pair[0]},{pair[1]}]"
                # a second to be read and published: the 10 s order timeout is far off
                status, _, _ = await _raw(alice, url, query, b"", *extra, timeout_s=1.0)
                assert status in (0, 100)  # no answer yet: the client hangs up
            await settled(lambda: len(api.waiters) == 4)  # read (late on a loaded host)
            assert len(api.waiters) == 4
            harness.resume()
            await settled(lambda: _quiet(api))
            assert _quiet(api), (api.waiters, len(api.deadlines), api.core.requests)
            assert await _open(alice) == []

    run(harness, scenario)


def test_a_batch_cancelled_during_a_database_lookup_leaves_nothing(
    with_history: Harness, dsn: str
) -> None:
    """The handler driven with a signed ``FastRequest`` of its own (neither lane cancels a
    handler when its client goes: a shutdown does), held in the lookup by a lock on the
    orders table, then cancelled."""

    harness = with_history

    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            await unfiled_rig.file_all(harness)  # the schema
            await _bids(alice, "d1")
            query = 'symbol=BTC-USD&origClientOrderIdList=["d1","elsewhere"]'
            headers = alice.headers("DELETE", BATCH, query, b"")
            req = FastRequest(
                "DELETE", f"{BATCH}?{query}", CIMultiDictProxy(CIMultiDict(headers)), b"",
                "127.0.0.1", True,
            )  # fmt: skip
            async with await psycopg.AsyncConnection.connect(dsn) as lock:
                await lock.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
                harness.pause()  # a cancel of d1, were it sent, would stay unanswered
                task = asyncio.get_running_loop().create_task(api.batch_cancel(req))
                await asyncio.sleep(0.5)  # in the lookup of "elsewhere"
                # every order is named before any cancel is sent: d1's waits unsent
                assert not task.done() and not api.waiters and not api.core.requests
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                left = (len(api.waiters), len(api.deadlines))
                await lock.rollback()
            harness.resume()
            await settled(lambda: not api.core.requests)
            assert left == (0, 0)
            assert [o["clientOrderId"] for o in await alice.call("GET", "/api/v1/openOrders")] == [
                "d1"
            ]  # nothing was sent

    run(harness, scenario)


# -- lanes, closing, limits ---------------------------------------------------------------------


def test_the_lanes_and_the_forms_agree(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            ways: dict[str, tuple[bytes, ...]] = {
                "fast": (), "escaped": (), "aiohttp": (b"Expect: 100-continue",),
                "form": (f"Content-Type: {FORM}".encode(),),
                "json": (b"Content-Type: application/json",),
            }  # fmt: skip
            seen: dict[str, list[Any]] = {}
            for name, extra in ways.items():
                a, b = await _bids(alice, f"{name}1", f"{name}2")
                seen[name] = []
                for ids in (f"[{a},0,{a},99999999,{b}]", "[1.5]", "[]"):
                    params = {"symbol": "BTC-USD", "orderIdList": ids}
                    text = urlencode(params) if name == "escaped" else "&".join(
                        f"{k}={v}" for k, v in params.items()
                    )  # fmt: skip
                    query, body = ("", text.encode()) if name == "form" else (text, b"")
                    if name == "json":
                        query, body = "", json.dumps(params).encode()
                    status, answer, raw = await _raw(alice, url, query, body, *extra)
                    assert (b"aiohttp" in raw) == (name == "aiohttp"), raw[:300]
                    seen[name].append((status, _shape(answer) if status == 200 else answer["code"]))
            assert seen["fast"][0] == (200, [
                "CANCELED", codes.ILLEGAL_PARAM, codes.CANCEL_REJECTED, codes.CANCEL_REJECTED,
                "CANCELED",
            ]), seen  # fmt: skip
            assert len({json.dumps(v) for v in seen.values()}) == 1, seen
            assert await _open(alice) == [] and _quiet(api)

    run(harness, scenario)


def test_a_stopping_gateway_still_takes_cancels(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            a, b, c = await _bids(alice, "s1", "s2", "s3")
            api.closing = True
            assert _shape(await alice.batch_cancel("BTC-USD", [a, b])) == ["CANCELED"] * 2
            one = await alice.call("DELETE", ORDER, symbol="BTC-USD", origClientOrderId="s3")
            assert one["orderId"] == c and one["status"] == "CANCELED", one
            status, refused = await alice.request("POST", ORDER, **BID, price="100.00")
            assert status == 503 and "cancels are taken" in refused["msg"], refused
            api.closing = False
            assert await _open(alice) == [] and _quiet(api)

    run(harness, scenario)


def test_a_429_cancels_nothing(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with await client(url, "ALICE", "alice-pw") as alice:
            ids = await _bids(alice, "l1", "l2", "l3", "l4")
            limits = api.key_limits
            api.key_limits = RateLimiter(0.001, 4)
            await _open(alice)  # a read takes one: three left for a batch of four
            with pytest.raises(ApiCallError) as refused:
                await alice.batch_cancel("BTC-USD", ids)
            assert refused.value.status == 429, refused.value.body
            assert refused.value.body["code"] == codes.TOO_MANY_REQUESTS
            assert _quiet(api) and not api.core.outgoing
            api.key_limits = RateLimiter(0.001, 2)  # past the burst: could never pass
            with pytest.raises(ApiCallError) as too_big:
                await alice.batch_cancel("BTC-USD", ids)
            assert too_big.value.status == 400 and "2 orders a batch" in too_big.value.body["msg"]
            api.key_limits = limits
            assert await _open(alice) == sorted(ids)
            assert _shape(await alice.batch_cancel("BTC-USD", ids)) == ["CANCELED"] * 4

    run(harness, scenario)


# -- the single route, the OpenAPI document -----------------------------------------------------


def test_the_single_cancel_answers_as_before_its_move(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        async with unfiled_rig.users(url) as (alice, bob):
            a, b = await _bids(alice, "o1", "o2")
            (other,) = await bob.batch_orders([{**ASK, "price": "400.00"}])
            (sold,) = await bob.batch_orders([{**ASK, "price": "100.00", "quantity": "0.10"}])
            assert sold["status"] == "FILLED"
            cases: list[tuple[dict[str, Any], int, int | str, str]] = [
                ({"orderId": a}, 400, codes.CANCEL_REJECTED, "is FILLED: too late to cancel"),
                ({"orderId": other["orderId"]}, 400, codes.CANCEL_REJECTED, "unknown order"),
                ({"orderId": 10**9}, 400, codes.CANCEL_REJECTED, "unknown order"),
                ({"origClientOrderId": "nope"}, 400, codes.NO_SUCH_ORDER, "does not exist"),
                ({"orderId": b, "origClientOrderId": "o1"}, 400, codes.ILLEGAL_PARAM, "same"),
                ({"origClientOrderId": "o2"}, 200, "CANCELED", ""),
            ]
            for params, status, code, why in cases:
                got, body = await alice.request("DELETE", ORDER, symbol="BTC-USD", **params)
                assert got == status and body.get("code", body.get("status")) == code, body
                assert why in body.get("msg", ""), (params, body)
            assert await _open(alice) == [] and await _open(bob) == [other["orderId"]]

    run(harness, scenario)


def test_the_documented_parameters_are_what_the_server_takes(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        harness.funder.publish_batch([bid_elsewhere(1, 30)])  # before ALICE's interest
        await settled(  # taken, and its events read by the gateway (a loaded host: later)
            lambda: (
                harness.router.sequencer.accounts.open_orders(ALICE) == 1 and harness.caught_up()
            ),
            10.0,
        )
        async with await client(url, "ALICE", "alice-pw") as alice:
            doc: dict[str, Any] = await alice.call("GET", "/openapi.json", signed=False)
            op = doc["paths"][BATCH]["delete"]
            params = {p["name"]: p for p in op["parameters"] if p["in"] == "query"}
            assert set(params) == rp.BATCH_CANCEL_PARAMS and "requestBody" not in op
            assert [n for n, p in params.items() if p["required"]] == ["symbol"]
            answer = jsonschema_rs.validator_for(
                {**doc, **op["responses"]["200"]["content"]["application/json"]["schema"]}
            )
            lists: dict[str, list[Any]] = {
                "orderIdList": [MAX_INT64 - k for k in range(rp.MAX_BATCH_ORDERS)],
                "origClientOrderIdList": [
                    f"{k}Az09._:/-".ljust(36, "z") for k in range(rp.MAX_BATCH_ORDERS)
                ],
            }
            for name, items in lists.items():
                schema = params[name]["schema"]
                text = json.dumps(items, separators=(",", ":"))
                content = jsonschema_rs.validator_for(schema["contentSchema"])
                assert content.is_valid(items) and len(text) <= schema["maxLength"]
                status, answers = await _cancel(alice, **{name: text})
                assert status == 200 and len(answers) == len(items), answers
                assert answer.is_valid(answers), answers
                assert not content.is_valid([*items, items[0]])
                status, _ = await _cancel(alice, **{name: json.dumps([*items, items[0]])})
                assert status == 400
            (a,) = await _bids(alice, "doc1")
            elsewhere = [o for o in await _open(alice) if o != a]
            done = await alice.batch_cancel("BTC-USD", [a, *elsewhere, a])
            assert _shape(done) == ["CANCELED"] * (1 + len(elsewhere)) + [codes.CANCEL_REJECTED]
            assert len(elsewhere) == 1 and answer.is_valid(done), done

    run(harness, scenario)
