"""Review 144: the REST API and the private stream held to consistency invariants under random
order flow, over real HTTP and real WebSocket clients.

Method: two symbols on one matcher (BTC-USD: prices 2 decimals on a 0.05 tick, sizes 2;
XBT-USD on the same assets: prices 1 decimal, sizes 3), three users (ALICE, BOB, CAROL) with
100,000 USD and 100 BTC each, an API key and a private stream each throughout. A seeded random
sequence of rounds of one to four signed requests at once by random users: POST LIMIT (GTC,
IOC, FOK, iceberg), MARKET, LIMIT_MAKER, STOP_LOSS, STOP_LOSS_LIMIT, with and without a
``newClientOrderId`` (one small set shared by the users), a random ``selfTradePreventionMode``;
DELETE order by ``orderId`` and by ``origClientOrderId``; PUT order (price, total or both);
DELETE openOrders with and without ``symbol``; GET order; another user's order named by both
ids to GET, DELETE and PUT; a stream reopened meanwhile. Checked after each answer: its fills
sum to at most ``executedQty`` and price as ``cummulativeQuoteQty``; IOC, FOK and MARKET never
rest, LIMIT_MAKER never takes. On each stream: ``seq`` contiguous, ``executedQty`` never back,
no report after an end, TRADE fills summing to ``executedQty`` and ``cummulativeQuoteQty``.
Every 20 rounds, quiet: snapshot + deltas equal GET openOrders (but ``updateTime``) and GET
account, which equals the router's balances; ``locked`` is the open orders' holds (a buy's
notional at its limit, or a stop-market's cap, plus the 20 bps taker margin rounded up; a
sell's size); free + locked per asset over all accounts is conserved; the fee account (99)
holds exactly the commissions the streams told; DELETE openOrders answers exactly what GET
openOrders listed, CANCELED, and leaves none. Then decimal edges ("1e1", "+1", " 1", "1_0",
Arabic, fullwidth, superscript digits, 1e-20, "-0", "0", "NaN", "Infinity", 40 and 70 digits,
trailing zeros, "100.", ".5") as price, quantity, stopPrice, icebergQty and an amend's.

Sound: over two seeds (about 600 orders), every invariant above held: no seq gap, no
executedQty going back, no view disagreeing with another at a quiet point, no asset created or
lost, every fee in the fee account, locked always the open orders' holds (the router's
``validate_internal_state`` too), a mass cancel's answer exactly the open orders. Another
user's order is never shown, cancelled or amended by ``orderId`` (GET and PUT -2013, DELETE
-2011 "unknown order", each naming the id) nor by a shared ``origClientOrderId`` (that names
the caller's own order, or none). Every decimal edge was refused naming the parameter and the
value (-1100 malformed, -1013 off the tick or lot or past the limits, or the 64-character
limit) or taken at exactly the value sent; a JSON number for a decimal is refused;
``quoteOrderQty`` is refused (-1104) as a parameter the endpoint does not take.

Faults (each a strict xfail when written; all fixed since, the same session):
1. ``origClientOrderId`` was looked up without the request's symbol (``RestOrders.order``):
   once the account's newest order under an id was on another symbol, GET and PUT of (symbol,
   origClientOrderId) answered -2013 and a DELETE sent a cancel of the other symbol's order,
   refused -2011. The random flow keeps its client ids apart per symbol so.
2. A JSON number for a decimal is refused naming a value the client did not send:
   ``"price": 100.0000000000000000001`` is "the JSON number 100.0"
   (``procs/gateway/rest_body.py:116-119`` prints the decoded float's repr).
3. An ``orderId`` of 21 or more digits is "not an integer", naming no limit
   (``procs/gateway/rest_params.py:71`` ``INTEGER`` caps the digits at 20, :211), where one of
   20 digits is "outside 1..9223372036854775807".
4. A quantity past int64 names int64 as the symbol's largest quantity: ``quantity
   9223372036854775807`` on BTC-USD is "beyond the largest quantity 92233720368547758.07"
   (``procs/gateway/instruments.py:72`` via ``rest_params.py:237``), where the largest the
   symbol takes is its maxQty, 10000000.00, which any smaller excess is told.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Iterator
from decimal import ROUND_CEILING, Decimal
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from config.edges import RestConfig
from config.schema import DatabaseConfig, SymbolConfig
from procs.gateway.rest_client import RestClient
from tests.unit.gateway.harness import BTC, USD, Harness, config
from tests.unit.gateway.rest_rig import post_json

USERS = {"ALICE": 601, "BOB": 602, "CAROL": 603}
FEE_ACCOUNT = 99  # the harness config's ``risk.fee_account``
#: symbol -> (price decimals, size decimals, tick in price units)
SYMBOLS = {"BTC-USD": (2, 2, 5), "XBT-USD": (1, 3, 1)}
OPEN = ("NEW", "PARTIALLY_FILLED")
ENDED = ("FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH", "REJECTED")
D = Decimal


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    rest = RestConfig(
        port=0, key_rate_per_s=100_000, key_burst=100_000, login_rate_per_s=100,
        login_burst=100, max_streams=16, stream_queue=100_000,
    )  # fmt: skip
    cfg = config(instance, tmp_path, rest=rest)
    xbt = SymbolConfig(name="XBT-USD", id=2, price_decimals=1, qty_decimals=3, tick=1, base="BTC")
    m1 = msgspec.structs.replace(cfg.matchers[0], symbols=list(SYMBOLS))
    cfg = msgspec.structs.replace(
        cfg, symbols=[*cfg.symbols, xbt], matchers=[m1], database=DatabaseConfig(enabled=False)
    )
    h = Harness(cfg)
    for name, account in USERS.items():
        h.add_user(name, f"{name.lower()}-pw", account)
        h.fund(account, usd=100_000 * 10**6, btc=100 * 10**6)
    yield h
    h.close()


def _run(h: Harness, scenario: Callable[[str], Awaitable[None]], limit_s: float = 50.0) -> None:
    async def main() -> None:
        await h.start()
        assert h.gateway is not None and h.gateway.api is not None
        try:
            await asyncio.wait_for(scenario(f"http://127.0.0.1:{h.gateway.api.port}"), limit_s)
        finally:
            await h.stop()

    asyncio.run(main())


async def _client(url: str, user: str) -> RestClient:
    api = RestClient(url)
    await api.login(user, f"{user.lower()}-pw")
    return api


class Mirror:
    """A user's state as the private stream tells it: the snapshot, then every delta. Fills
    are kept by trade id, shared with the stream that replaces this one."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, faults: list[str]) -> None:
        self.ws, self.faults = ws, faults
        self.seq = 0
        self.orders: dict[int, dict[str, Any]] = {}
        self.balances: dict[str, tuple[str, str]] = {}
        self.last: dict[int, dict[str, Any]] = {}
        self.fills: dict[int, dict[int, tuple[Decimal, Decimal]]] = {}
        self.trades: dict[tuple[int, int], dict[str, Any]] = {}
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return
            event = json.loads(msg.data)
            if event["event"] != "heartbeat":
                self._apply(event)

    def _apply(self, event: dict[str, Any]) -> None:
        if event.get("seq") != self.seq + 1:
            self.faults.append(f"stream seq {self.seq} then {event.get('seq')}: {event}")
        self.seq = event.get("seq", self.seq)
        d = event["data"]
        if event["event"] == "snapshot":
            self.balances = {b["asset"]: (b["free"], b["locked"]) for b in d["balances"]}
            self.orders = {o["orderId"]: o for o in d["openOrders"]}
        elif event["event"] == "balance":
            self.balances[d["asset"]] = (d["free"], d["locked"])
        elif event["event"] == "executionReport":
            self._report(d)
        else:
            self.faults.append(f"unknown stream event {event}")

    def _report(self, d: dict[str, Any]) -> None:
        oid = d["orderId"]
        fills = self.fills.setdefault(oid, {})
        if d["executionType"] == "TRADE":
            fills[d["tradeId"]] = (D(d["lastQty"]), D(d["lastPrice"]))
            self.trades[oid, d["tradeId"]] = d
            if sum(q for q, _ in fills.values()) != D(d["executedQty"]):
                self.faults.append(f"stream fills {fills} do not sum to executedQty: {d}")
            quote = d["cummulativeQuoteQty"]
            if quote is not None and sum(q * p for q, p in fills.values()) != D(quote):
                self.faults.append(f"stream fills {fills} do not price to {quote}: {d}")
        before = self.last.get(oid)
        if before is not None and D(d["executedQty"]) < D(before["executedQty"]):
            self.faults.append(f"stream executedQty went back: {before} then {d}")
        if before is not None and before["status"] in ENDED:
            self.faults.append(f"stream report after the order's end: {before} then {d}")
        self.last[oid] = d
        if d["status"] in OPEN:
            self.orders[oid] = d
        else:
            self.orders.pop(oid, None)


def _hold(o: dict[str, Any]) -> tuple[str, Decimal]:
    """The asset and amount an open order holds: a sell its size left, a buy its notional at
    its limit (a stop-market buy: its cap, the stop price plus the 500 bps band on the tick)
    plus the 20 bps taker margin, rounded up to the micro-dollar."""
    left = D(o["origQty"]) - D(o["executedQty"])
    if o["side"] == "SELL":
        return "BTC", left
    price = D(o["price"])
    if not price:
        pd, _, tick = SYMBOLS[o["symbol"]]
        stop = int(D(o["stopPrice"]).scaleb(pd))
        price = D(stop * 10_500 // 10_000 // tick * tick).scaleb(-pd)
    notional = price * left
    return "USD", notional + (notional * 20 / 10_000).quantize(D("1e-6"), ROUND_CEILING)


class Flow:
    """The random order flow and its checks (the module docstring lists them)."""

    def __init__(self, h: Harness, seed: int) -> None:
        self.h, self.rng = h, random.Random(seed)
        self.faults: list[str] = []
        self.clients: dict[str, RestClient] = {}
        self.mirrors: dict[str, Mirror] = {}
        self.owner: dict[int, str] = {}  # orderId -> its user
        self.state: dict[int, tuple[str, str, str]] = {}  # orderId -> (status, symbol, id)
        self.posted: list[tuple[str, dict[str, Any]]] = []
        self.accounts = h.router.sequencer.accounts
        self.totals = {a: self.accounts.totals(a) for a in (USD, BTC)}

    async def open(self, url: str) -> None:
        for user in USERS:
            self.clients[user] = await _client(url, user)
            self.mirrors[user] = Mirror(await self.clients[user].stream(), self.faults)

    async def close(self) -> None:
        for user, api in self.clients.items():
            await self.mirrors[user].ws.close()
            await api.close()

    def note(self, user: str, o: dict[str, Any]) -> None:
        if o["orderId"]:
            self.owner.setdefault(o["orderId"], user)
            self.state[o["orderId"]] = (o["status"], o["symbol"], o["clientOrderId"])

    def _decimals(self, sym: str) -> tuple[str, str]:
        pd, qd, tick = SYMBOLS[sym]
        price = D(self.rng.randrange(9_800, 10_200) // tick * tick).scaleb(-2)
        return f"{price:.{pd}f}", f"{D(self.rng.randrange(1, 60 * 10 ** (qd - 2))).scaleb(-qd)}"

    async def act(self, user: str) -> None:
        rng, api = self.rng, self.clients[user]
        sym = rng.choice(list(SYMBOLS))
        kind = rng.choice(
            ["limit"] * 6 + ["ioc", "fok", "market", "maker", "stop", "stop_limit", "iceberg"]
            + ["cancel", "cancel", "amend", "amend", "mass", "get", "foreign", "resubscribe"]
        )  # fmt: skip
        price, qty = self._decimals(sym)
        mine = [
            oid for oid, (status, s, _) in self.state.items()
            if self.owner[oid] == user and status in OPEN and s == sym
        ]  # fmt: skip
        if kind == "resubscribe":
            old = self.mirrors[user]
            new = self.mirrors[user] = Mirror(await api.stream(), self.faults)
            new.fills, new.trades = old.fills, old.trades
            await old.ws.close()
        elif kind in ("cancel", "amend") and mine:
            oid = rng.choice(mine)
            named: dict[str, Any] = {"orderId": oid} if rng.random() < 0.5 else {
                "origClientOrderId": self.state[oid][2]
            }  # fmt: skip
            change = rng.choice(
                [{"price": price}, {"quantity": qty}, {"price": price, "quantity": qty}]
            )
            extra: dict[str, Any] = {} if kind == "cancel" else change
            method = "DELETE" if kind == "cancel" else "PUT"
            status, body = await api.request(method, "/api/v1/order", symbol=sym, **named, **extra)
            if status == 200:
                self.note(user, body)
            elif body["code"] not in (-2010, -2011, -1013):
                self.faults.append(f"{method} {named} {extra} of {user}: {status} {body}")
        elif kind == "mass":
            whole: dict[str, Any] = {"symbol": sym} if rng.random() < 0.7 else {}
            status, body = await api.request("DELETE", "/api/v1/openOrders", **whole)
            assert status == 200, body
            for o in body:
                self.note(user, o)
        elif kind == "get" and self.owner:
            await self._get(user, rng.choice(list(self.owner)))
        elif kind == "foreign":
            theirs = [
                o for o, (s, _, _) in self.state.items() if s in OPEN and self.owner[o] != user
            ]
            if theirs:
                await self._foreign(user, rng.choice(theirs))
        elif kind not in ("cancel", "amend", "get"):
            await self._post(user, kind, sym, price, qty)

    async def _post(self, user: str, kind: str, sym: str, price: str, qty: str) -> None:
        rng = self.rng
        side = rng.choice(["BUY", "SELL"])
        p: dict[str, Any] = {"symbol": sym, "side": side, "type": "LIMIT", "quantity": qty}
        if kind == "market":
            p["type"] = "MARKET"
        elif kind in ("stop", "stop_limit"):
            p["type"], p["stopPrice"] = "STOP_LOSS", price
            if kind == "stop_limit":
                p["type"], p["price"] = "STOP_LOSS_LIMIT", self._decimals(sym)[0]
        else:
            p["price"] = price
            p["type"] = "LIMIT_MAKER" if kind == "maker" else "LIMIT"
            p |= {"ioc": {"timeInForce": "IOC"}, "fok": {"timeInForce": "FOK"}}.get(kind, {})
            if kind == "iceberg":
                p["quantity"] = "0.400" if sym == "XBT-USD" else "0.40"
                p["icebergQty"] = "0.100" if sym == "XBT-USD" else "0.10"
            if rng.random() < 0.7:  # shared by the users, one set a symbol
                p["newClientOrderId"] = f"{sym[:3]}{rng.randrange(8)}"
        if rng.random() < 0.3:
            p["selfTradePreventionMode"] = rng.choice(
                ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"]
            )
        status, body = await self.clients[user].request("POST", "/api/v1/order", **p)
        if status != 200:
            if body["code"] != -2010:
                self.faults.append(f"POST {p} of {user}: {status} {body}")
            return
        self.note(user, body)
        self.posted.append((user, body))
        filled = sum(D(f["qty"]) for f in body["fills"])
        quote = sum(D(f["qty"]) * D(f["price"]) for f in body["fills"])
        if filled > D(body["executedQty"]):
            self.faults.append(f"POST answer's fills {filled} past its executedQty: {body}")
        if filled == D(body["executedQty"]) and D(body["cummulativeQuoteQty"]) != quote:
            self.faults.append(f"POST answer's fills price to {quote}: {body}")
        if (p.get("timeInForce") or kind == "market") and body["status"] in OPEN:
            self.faults.append(f"an {p.get('timeInForce', 'IOC')} order rests: {body}")
        if kind == "maker" and body["fills"]:
            self.faults.append(f"a LIMIT_MAKER took: {body}")

    async def _get(self, user: str, oid: int) -> None:
        sym = self.state[oid][1]
        status, body = await self.clients[user].request(
            "GET", "/api/v1/order", symbol=sym, orderId=oid
        )
        if self.owner[oid] == user and status == 200:
            self.note(user, body)
        elif (
            self.owner[oid] == user or body["code"] != -2013 or f"orderId={oid}" not in body["msg"]
        ):
            self.faults.append(f"GET {oid} of {self.owner[oid]} by {user}: {status} {body}")

    async def _foreign(self, user: str, oid: int) -> None:
        """Another user's order, named by its id and by its client id: never shown, cancelled
        or amended (a client id the caller uses too names the caller's own order)."""
        _, sym, cid = self.state[oid]
        pd, qd, _ = SYMBOLS[sym]
        asked: list[tuple[str, dict[str, Any]]] = [
            ("GET", {"orderId": oid}), ("DELETE", {"orderId": oid}),
            ("PUT", {"orderId": oid, "quantity": f"{D(1):.{qd}f}"}),
            ("GET", {"origClientOrderId": cid}), ("DELETE", {"origClientOrderId": cid}),
            ("PUT", {"origClientOrderId": cid, "price": f"{D(99):.{pd}f}"}),
        ]  # fmt: skip
        for method, named in asked:
            status, body = await self.clients[user].request(
                method, "/api/v1/order", symbol=sym, **named
            )
            if status == 200:
                if self.owner.get(body["orderId"]) != user:
                    self.faults.append(f"{method} {named} by {user} answers {body}")
                continue
            want = -2011 if method == "DELETE" and "orderId" in named else -2013
            if "orderId" in named and (body["code"] != want or f"={oid}" not in body["msg"]):
                self.faults.append(f"{method} {named} of another by {user}: {status} {body}")

    async def quiet_check(self, label: str) -> None:
        """Every view agrees once the flow has paused: looked at again every 0.3 s for up to
        10 s (a stream behind on a loaded host), what still differs then is a fault."""
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            await asyncio.sleep(0.3)
            found: list[str] = []
            for user, api in self.clients.items():
                await self._views(f"{label} {user}", user, api, found.append)
            self.accounts.validate_internal_state()
            totals = {a: self.accounts.totals(a) for a in self.totals}
            fees = D(self.accounts.balance(FEE_ACCOUNT, USD)[0]).scaleb(-6)
            told = sum(D(t["commission"]) for m in self.mirrors.values() for t in m.trades.values())
            if totals != self.totals or fees != told:
                found.append(f"{label}: totals {totals}, at first {self.totals}; the fee "
                             f"account holds {fees}, the streams told {told}")  # fmt: skip
            if not found or asyncio.get_running_loop().time() > deadline:
                self.faults += found
                return

    async def _views(
        self, label: str, user: str, api: RestClient, fault: Callable[[str], None]
    ) -> None:
        """The user's stream against openOrders and account, those against the router."""
        mirror = self.mirrors[user]
        listed = {o["orderId"]: o for o in await api.call("GET", "/api/v1/openOrders")}
        account = await api.call("GET", "/api/v1/account")
        balances = {b["asset"]: (b["free"], b["locked"]) for b in account["balances"]}
        if set(listed) != set(mirror.orders) or balances != mirror.balances:
            fault(f"{label}: openOrders {sorted(listed)}, account {balances}; the stream "
                  f"{sorted(mirror.orders)}, {mirror.balances}")  # fmt: skip
        for oid in set(listed) & set(mirror.orders):
            seen = {k: v for k, v in mirror.orders[oid].items() if k in listed[oid]}
            if seen | {"updateTime": 0} != listed[oid] | {"updateTime": 0}:
                fault(f"{label}: openOrders {listed[oid]}, the stream {seen}")
        held = {"USD": D(0), "BTC": D(0)}
        for o in listed.values():
            name, amount = _hold(o)
            held[name] += amount
        for name, asset in (("USD", USD), ("BTC", BTC)):
            free, locked = self.accounts.balance(USERS[user], asset)
            router = (f"{D(free).scaleb(-6):.6f}", f"{D(locked).scaleb(-6):.6f}")
            if balances.get(name, ("0.000000", "0.000000")) != router or D(router[1]) != held[name]:
                fault(f"{label} {name}: account {balances.get(name)}, router {router}, the "
                      f"open orders hold {held[name]}: {list(listed.values())}")  # fmt: skip

    async def mass_check(self, label: str) -> None:
        """A DELETE openOrders, quiet: answers exactly what openOrders listed, CANCELED."""
        user = self.rng.choice(list(USERS))
        s = self.rng.choice([None, *SYMBOLS])
        named: dict[str, Any] = {} if s is None else {"symbol": s}
        api = self.clients[user]
        before = {o["orderId"]: o for o in await api.call("GET", "/api/v1/openOrders", **named)}
        after = {o["orderId"]: o for o in await api.call("DELETE", "/api/v1/openOrders", **named)}
        if set(before) != set(after) or any(
            o["status"] != "CANCELED" or o["executedQty"] != before[oid]["executedQty"]
            for oid, o in after.items()
        ):
            self.faults.append(f"{label} {user} {named}: listed {before}, cancelled {after}")
        for o in after.values():
            self.note(user, o)
        for _ in range(50):  # up to 10 s: the matchers end what the router's verdict took
            await asyncio.sleep(0.2)
            if not (left := await api.call("GET", "/api/v1/openOrders", **named)):
                break
        else:
            self.faults.append(f"{label} {user} {named}: open after a mass cancel: {left}")

    def final_check(self) -> None:
        """Each POST answer's fills are the stream's TRADE reports of its order."""
        for user, body in self.posted:
            for f in body["fills"]:
                t = self.mirrors[user].trades.get((body["orderId"], f["tradeId"]))
                told = t and (t["lastQty"], t["lastPrice"], t["commission"], t["isMaker"])
                if told != (f["qty"], f["price"], f["commission"], f["isMaker"]):
                    self.faults.append(f"POST fill {f} of {body['orderId']}, stream {t}")


@pytest.mark.parametrize("seed", [144, 1440])
def test_random_flow_keeps_every_view_consistent(harness: Harness, seed: int) -> None:
    """The module docstring's invariants, over 240 rounds of one to four requests at once."""
    flow = Flow(harness, seed)

    async def scenario(url: str) -> None:
        await flow.open(url)
        try:
            for n in range(240):
                users = [flow.rng.choice(list(USERS)) for _ in range(flow.rng.choice([1, 2, 4]))]
                await asyncio.gather(*(flow.act(u) for u in users))
                if n % 20 == 19:
                    await flow.quiet_check(f"round {n}")
                    await flow.mass_check(f"round {n}")
            await flow.quiet_check("end")
            flow.final_check()
        finally:
            await flow.close()

    _run(harness, scenario)
    assert not flow.faults, "\n".join(flow.faults[:10])
    assert len(flow.owner) > 250, f"only {len(flow.owner)} orders placed"


EDGES = [
    "1e1", "+1", " 1", "1 ", "1_0", "\u0661", "\uff11", "\u00b9", "0.00000000000000000001",
    "-0", "0", "NaN", "Infinity", "1" * 40, "1" * 70, "100.000000000000000000", "100.",
    ".5", "100.0500", "0x10", "1,5", "100.00\n", "1.5e-1", "9223372036854775807",
]  # fmt: skip
SHOWN = {
    "price": "price",
    "quantity": "origQty",
    "stopPrice": "stopPrice",
    "icebergQty": "icebergQty",
}


def _exact_or_named(name: str, value: str, status: int, body: dict[str, Any]) -> str | None:
    """None when ``value`` was taken at exactly its value or refused naming ``name`` and it."""
    if status == 200:
        shown = body[SHOWN[name]]
        return None if D(shown) == D(value) else f"{name}={value!r} taken as {shown}"
    msg = body["msg"]
    named = name in msg and (value in msg or repr(value) in msg or "limit is 64" in msg)
    return None if status == 400 and body["code"] in (-1100, -1013, -1111) and named else f"{body}"


def test_decimal_edges_are_taken_exactly_or_refused_by_name(harness: Harness) -> None:
    """Each edge, as each decimal parameter of a new order and of an amend."""
    wrong: list[str] = []

    async def scenario(url: str) -> None:
        alice = await _client(url, "ALICE")
        order: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT"}
        order["price"] = "100.00"
        try:
            for name in SHOWN:
                for value in EDGES:
                    p = order | {"quantity": "1.00", name: value}
                    if name == "stopPrice":
                        p["type"] = "STOP_LOSS_LIMIT"
                    status, body = await alice.request("POST", "/api/v1/order", **p)
                    if why := _exact_or_named(name, value, status, body):
                        wrong.append(f"POST {why}")
                    if status == 200:
                        await alice.request("DELETE", "/api/v1/order", symbol="BTC-USD",
                                            orderId=body["orderId"])  # fmt: skip
            resting = await alice.call("POST", "/api/v1/order", **order, quantity="0.10")
            for name in ("price", "quantity"):
                for value in EDGES:
                    change: dict[str, Any] = {name: value, "orderId": resting["orderId"]}
                    status, body = await alice.request(
                        "PUT", "/api/v1/order", symbol="BTC-USD", **change
                    )
                    if why := _exact_or_named(name, value, status, body):
                        wrong.append(f"PUT {why}")
            status, body = await alice.request(
                "POST", "/api/v1/order", symbol="BTC-USD", side="BUY", type="MARKET",
                quoteOrderQty="100",
            )  # fmt: skip
            if status != 400 or body["code"] != -1104 or "quoteOrderQty" not in body["msg"]:
                wrong.append(f"quoteOrderQty: {status} {body}")
        finally:
            await alice.close()

    _run(harness, scenario)
    assert not wrong, "\n".join(wrong)


def _as_alice(h: Harness, steps: Callable[[RestClient, str], Awaitable[list[Any]]]) -> list[Any]:
    """What ``steps`` returns, run with ALICE's client (closed after)."""
    out: list[Any] = []

    async def scenario(url: str) -> None:
        alice = await _client(url, "ALICE")
        try:
            out.extend(await steps(alice, url))
        finally:
            await alice.close()

    _run(h, scenario)
    return out


def test_an_origClientOrderId_names_the_order_on_the_requests_symbol(harness: Harness) -> None:
    """ALICE's BTC-USD order "twin" is cancelled; her XBT-USD order "twin" rests (ids are
    unique among open orders only). (BTC-USD, "twin") names the first: GET answers it, as GET
    by its orderId does. Actual: -2013 "order does not exist", and a DELETE of it sends a
    cancel of the XBT-USD order's id, refused -2011 naming that id."""

    async def steps(alice: RestClient, url: str) -> list[Any]:
        order: dict[str, Any] = {"side": "BUY", "type": "LIMIT", "newClientOrderId": "twin"}
        btc = await alice.call(
            "POST", "/api/v1/order", symbol="BTC-USD", price="90.00", quantity="0.10", **order
        )
        await alice.call("DELETE", "/api/v1/order", symbol="BTC-USD", orderId=btc["orderId"])
        await alice.call(
            "POST", "/api/v1/order", symbol="XBT-USD", price="90.0", quantity="0.100", **order
        )
        by_id = await alice.call("GET", "/api/v1/order", symbol="BTC-USD", orderId=btc["orderId"])
        named: dict[str, Any] = {"symbol": "BTC-USD", "origClientOrderId": "twin"}
        return [by_id, await alice.request("GET", "/api/v1/order", **named)]

    by_id, (status, body) = _as_alice(harness, steps)
    assert by_id["clientOrderId"] == "twin" and by_id["status"] == "CANCELED", by_id
    assert (status, body) == (200, by_id), f"GET (BTC-USD, 'twin'): {status} {body}"


def test_a_json_number_is_refused_naming_the_value_sent(harness: Harness) -> None:
    """``"price": 100.0000000000000000001`` is refused (decimals are strings), but the msg
    says "the JSON number 100.0": a value the client did not send."""

    async def steps(alice: RestClient, url: str) -> list[Any]:
        raw = (b'{"symbol":"BTC-USD","side":"BUY","type":"LIMIT",'
               b'"price":100.0000000000000000001,"quantity":"0.10"}')  # fmt: skip
        return [await post_json(alice, url, raw)]

    [(status, body)] = _as_alice(harness, steps)
    assert status == 400 and body["code"] == -1100, body
    assert "100.0000000000000000001" in body["msg"], body["msg"]


def test_a_long_order_id_is_refused_naming_its_limit(harness: Harness) -> None:
    """orderId 99999999999999999999 (20 digits) is "outside 1..9223372036854775807"; one more
    digit is "not an integer", naming no limit."""

    async def steps(alice: RestClient, url: str) -> list[Any]:
        named: list[dict[str, Any]] = [{"symbol": "BTC-USD", "orderId": "9" * n} for n in (20, 21)]
        return [await alice.request("GET", "/api/v1/order", **p) for p in named]

    for status, body in _as_alice(harness, steps):
        assert status == 400 and body["code"] == -1100, body
        assert "1..9223372036854775807" in body["msg"], body["msg"]


def test_a_huge_quantity_is_refused_naming_the_symbols_max_qty(harness: Harness) -> None:
    """BTC-USD's maxQty is 10000000.00: quantity 10000000.01 is told so; 9223372036854775807
    is told "beyond the largest quantity 92233720368547758.07", which the symbol refuses."""

    async def steps(alice: RestClient, url: str) -> list[Any]:
        order: dict[str, Any] = {"symbol": "BTC-USD", "side": "BUY", "type": "LIMIT"}
        order["price"] = "100.00"
        sizes = ("10000000.01", "9223372036854775807")
        return [await alice.request("POST", "/api/v1/order", **order, quantity=q) for q in sizes]

    for status, body in _as_alice(harness, steps):
        assert status == 400 and body["code"] == -1013, body
        assert "maxQty 10000000.00" in body["msg"], body["msg"]
