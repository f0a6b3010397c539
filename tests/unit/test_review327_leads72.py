"""Review 327: leads of session 71's notes, each pinned and fixed in session 72.

Reviewed: ``procs/cli.py`` (``shm ls``), ``procs/gateway/rest_params.py`` (``order/test``'s
check of what the router refuses from the order alone), ``procs/gateway/history.py``
(``klines``), ``procs/dbwriter/projection.py`` and ``store.py`` (candles),
``procs/dbwriter/migrations/0014_candle_taker_buy.sql``.

Rig: the REST rig (``tests/unit/gateway/rest_rig.py``, a real gateway and router behind real
HTTP) and the ``ringex`` CLI in process (``tests/unit/test_review_admin_bugs._cli``); a
journal made by ``JournalBuilder`` filed by the real writer into a real PostgreSQL, klines
asked as the gateway asks them (``History``).

Faults found:

1. ``ringex shm ls --instance a --instance b`` listed b's segments in silence, where ``shm rm``
   refuses the same flag twice (review 314) and every other valued flag of the CLI is
   ``Once``. Fixed: ``procs/cli.py`` gives ``ls``'s ``--instance`` ``action=Once``.
2. ``POST order/test`` answered ``{}`` for a STOP_LOSS BUY without a price whose stopPrice is
   so high that its cap (the stop price plus ``bandBps``) passes the largest price, which
   ``POST order`` sends and the router refuses ``INVALID_PRICE`` (-2010, the cap's note);
   with ``max_order_notional`` set, order/test called it a notional past the limit (-1013)
   where the router says ``INVALID_PRICE``. Fixed: ``rest_params.router_refusal`` (was
   ``over_notional``) refuses the cap first, as ``Accounts.reserve_new`` does.
3. REST ``klines`` rows had nine fields where Binance's have twelve (review 323's lead): a
   bot that reads a kline's taker buy volume (``row[9]``, ``row[10]``) or makes a
   twelve-column frame of them failed. Fixed: the writer's candles keep the taker buy
   volume and quote volume (a buying aggressor's trades; migration 0014 adds the columns and
   fills them in from the trades table), and ``klines`` answers Binance's twelve fields, the
   last ``"0"``; the first nine while the writer has not migrated the database yet.
4. (A reread of review 328's fix.) ``order/test`` judged a MARKET buy sent with a worst price
   at that price against ``max_order_notional``, where the router since review 328 judges it
   at the lower of its price and its cap from the last trade: a refusal (-1013) of an order
   ``POST order`` takes. Fixed: ``rest_params.router_refusal`` leaves a market order's
   notional to the router, as it did one without a price.

Sound: ``shm ls --instance`` once; order/test of a stop buy whose cap fits.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from procs.common.types import Side
from procs.dbwriter.migrate import MIGRATIONS
from procs.gateway.history import History
from procs.gateway.rest import RestApi
from tests.unit.dbwriter.history_query import query_history
from tests.unit.dbwriter.journal_gen import JournalBuilder, fund, limit_order, make_cfg, write_all
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, run
from tests.unit.gateway.test_review320_reread71 import _code, bounded, plain
from tests.unit.test_review_admin_bugs import _cli

__all__ = ["bounded", "plain"]  # the fixtures these tests take, imported

ORDER = "/api/v1/order"
TEST = "/api/v1/order/test"
#: A stop price (2 decimals) whose cap, plus the rig's bandBps, passes 2**63 - 1 units.
HIGH_STOP = "90000000000000000.00"


def test_shm_ls_refuses_an_instance_given_twice(capsys: pytest.CaptureFixture[str]) -> None:
    """Scenario: ``ringex shm ls --instance r327-a --instance r327-b``. Expected: a usage error
    (exit 2) naming the flag, as ``shm rm`` answers. Was (fixed): exit 0, b's list."""
    assert _cli(["shm", "ls", "--instance", "r327-a", "--instance", "r327-b"]) == 2
    assert "--instance" in capsys.readouterr().err


def test_sound_shm_ls_one_instance(capsys: pytest.CaptureFixture[str]) -> None:
    assert _cli(["shm", "ls", "--instance", "r327-none", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"


def _tested_and_placed(harness: Harness, stop_price: str) -> dict[str, Any]:
    """order/test's and POST order's (status, code) for ALICE's STOP_LOSS BUY 0.01 at
    ``stop_price``, and POST order's msg."""
    got: dict[str, Any] = {}

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        stop: dict[str, Any] = {
            "symbol": "BTC-USD", "side": "BUY", "type": "STOP_LOSS", "quantity": "0.01"
        }  # fmt: skip
        try:
            got["tested"] = _code(await alice.request("POST", TEST, **stop, stopPrice=stop_price))
            status, body = await alice.request("POST", ORDER, **stop, stopPrice=stop_price)
            got["placed"], got["msg"] = _code((status, body)), body.get("msg", "")
        finally:
            await alice.close()

    run(harness, scenario)
    return got


@pytest.mark.parametrize("rig", ["plain", "bounded"])
def test_order_test_refuses_a_stop_buy_whose_cap_does_not_fit(
    rig: str, request: pytest.FixtureRequest
) -> None:
    """Scenario: ALICE tests, then sends, a STOP_LOSS BUY without a price at stopPrice
    90000000000000000.00 (its cap past the largest price), with and without
    ``max_order_notional``. Expected: order/test answers as POST order does: 400 -2010, the
    router's INVALID_PRICE. Was (fixed): ``{}`` without a notional limit, -1013 with one."""
    got = _tested_and_placed(request.getfixturevalue(rig), HIGH_STOP)
    assert got["placed"] == (400, -2010) and "INVALID_PRICE" in got["msg"], got
    assert got["tested"] == got["placed"], got


def test_sound_order_test_takes_a_stop_buy_whose_cap_fits(plain: Harness) -> None:
    got = _tested_and_placed(plain, "20.00")
    assert got["tested"] == (200, 0), got


def _klines(dsn: str, cfg: Any, now_ms: int) -> dict[str, list[list[Any]]]:
    sym = next(s for s in cfg.symbols if s.id == 1)

    async def ask(h: History) -> dict[str, list[list[Any]]]:
        return {i: await h.klines(sym, i, start_ms=0, now_ms=now_ms) for i in ("1m", "1h")}

    return query_history(dsn, ask)


def test_klines_carry_the_taker_buy_volumes(tmp_path: Path, dsn: str) -> None:
    """Scenario: in one minute a buyer takes 3 lots at 1000.00, a seller 2 at 999.00, a buyer
    1 at 1001.00; the writer files them. Expected: the 1m and 1h klines have Binance's twelve
    fields: volume 6 lots, taker buy volume 4 lots, taker buy quote volume 3 x 1000.00 +
    1 x 1001.00, and "0"; a database filed before migration 0014 (its taker columns zero)
    gets the same figures from the migration's fill-in from the trades. Was (fixed): nine
    fields."""
    cfg = make_cfg(tmp_path)
    b = JournalBuilder(cfg)
    for account in (10, 11):
        fund(b, account, {1: 10**15, 2: 10**15})
    for maker, taker, side, price, qty in (
        (10, 11, Side.SELL, 100_000, 3),
        (11, 10, Side.BUY, 99_900, 2),
        (10, 11, Side.SELL, 100_100, 1),
    ):
        limit_order(b, maker, 1, side, price, qty)
        limit_order(b, taker, 1, Side.BUY if side == Side.SELL else Side.SELL, price, qty)
    b.close()
    write_all(cfg, dsn)
    sym = next(s for s in cfg.symbols if s.id == 1)
    lots = 10**sym.qty_decimals
    now_ms = b.clock // 10**6 + 1
    got = _klines(dsn, cfg, now_ms)
    for rows in got.values():
        (row,) = [k for k in rows if k[8]]
        v, bv, bq = (Decimal(row[k]) * lots for k in (5, 9, 10))
        assert (v, bv, bq, row[8], row[11]) == (6, 4, 3 * 1000 + 1001, 3, "0"), row
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE candles SET taker_buy_volume = 0, taker_buy_quote_volume = 0")
        text = (MIGRATIONS / "0014_candle_taker_buy.sql").read_text()
        conn.execute("ALTER TABLE candles DROP COLUMN taker_buy_volume")
        conn.execute("ALTER TABLE candles DROP COLUMN taker_buy_quote_volume")
        nine = _klines(dsn, cfg, now_ms)
        conn.execute(text.encode())
    assert nine == {i: [k[:9] for k in rows] for i, rows in got.items()}  # before 0014
    assert _klines(dsn, cfg, now_ms) == got  # 0014's fill-in from the trades


def test_order_test_leaves_a_market_buys_notional_to_the_router(bounded: Harness) -> None:
    """Scenario: ``max_order_notional`` $100; ALICE tests a MARKET BUY 0.01 with a worst price
    of 20000.00 ($200 at that price). Expected: ``{}``: the router judges a market buy at the
    lower of its price and its cap from the last trade (review 328), which order/test does not
    know, so a worst price alone is no refusal. Was (fixed): 400 -1013 (judged at its price),
    an order POST order takes when the last trade is low."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        market: dict[str, Any] = {
            "symbol": "BTC-USD", "side": "BUY", "type": "MARKET", "quantity": "0.01"
        }  # fmt: skip
        try:
            tested = _code(await alice.request("POST", TEST, **market, price="20000.00"))
            assert tested == (200, 0), tested
        finally:
            await alice.close()

    run(bounded, scenario)
