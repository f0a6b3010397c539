"""``ringex admin balances``, ``cancel-all``, ``users`` and ``remove-user`` against a router
and a matcher stepped in a thread (as their processes would), through the admin gateway's
rings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.apikeys import ApiKeyStore
from procs.common.topology import users_path
from procs.common.types import Side
from procs.common.users import UserStore
from tests.unit.router.test_router import Exchange, config, fund, order
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config


@pytest.fixture
def ex(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Exchange]:
    """Account 7 with 100.0000 USD and a resting bid holding part of it; account 8 with 5 BTC
    and a resting ask."""
    exchange = Exchange(config(instance, tmp_path))
    _use_config(monkeypatch, exchange.cfg)
    fund(exchange, 7, usd=1_000_000, btc=0)
    fund(exchange, 8, usd=0, btc=50_000)
    exchange.send(1, order(1, 7, Side.BUY, 1000, 100), order(2, 7, Side.BUY, 900, 100))
    exchange.send(2, order(3, 8, Side.SELL, 2000, 100, gateway=2))
    yield exchange
    exchange.stop()


def _open(ex: Exchange, account: int) -> int:
    ex.pump()
    return ex.router.sequencer.accounts.open_orders(account)


def test_balances_show_free_and_locked_per_asset(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    with _Pump(ex):
        assert _cli(["admin", "balances", "--profile", "x", "--account", "7"]) == 0
        text = capsys.readouterr().out
        assert _cli(["admin", "balances", "--profile", "x", "--account", "7", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert _cli(["admin", "balances", "--profile", "x", "--account", "55"]) == 1
        nothing = capsys.readouterr().err
    usd = shown["balances"]["USD"]
    assert shown["account"] == 7 and usd["free"] != "100.0000" and usd["locked"] != "0.0000"
    assert float(usd["free"]) + float(usd["locked"]) == 100.0  # the bids hold, nothing spent
    assert "account 7 USD" in text and usd["free"] in text and usd["locked"] in text
    assert "UNKNOWN_ACCOUNT: account 55 is not open" in nothing  # not "no balances"


def test_cancel_all_ends_one_accounts_orders_or_the_whole_book(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (_open(ex, 7), _open(ex, 8)) == (2, 1)
    with _Pump(ex):
        assert _cli(["admin", "cancel-all", "--profile", "x", "--account", "7"]) == 0
    assert "cancel-all account 7, every symbol: done" in capsys.readouterr().out
    assert (_open(ex, 7), _open(ex, 8)) == (0, 1)  # the other account's order stays
    assert ex.router.sequencer.accounts.balance(7, 1) == (1_000_000, 0)  # released
    with _Pump(ex):
        argv = ["admin", "cancel-all", "--profile", "x", "--every-account", "--symbol", "BTC-USD"]
        assert _cli(argv) == 0
    assert _open(ex, 8) == 0


def test_cancel_all_refusals(ex: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["admin", "cancel-all", "--profile", "x"]
    assert _cli([*base, "--account", "7", "--symbol", "DOGE-USD"]) == 2
    assert "symbol 'DOGE-USD' is not configured" in capsys.readouterr().err
    assert _cli(base) == 2  # whose orders: one of --account and --every-account
    assert _cli([*base, "--account", "7", "--every-account"]) == 2
    assert _cli([*base, "--account", "0"]) == 1
    assert "account 0 is outside 1.." in capsys.readouterr().err
    assert _open(ex, 7) == 2  # none of those sent anything


# -- users and remove-user ----------------------------------------------------------------------


def test_users_lists_and_remove_user_takes_a_user_off(
    ex: Exchange, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listed without secrets; removed: out of the users file, its API keys revoked, its
    account's orders cancelled with --cancel-orders, the other user untouched."""
    path = users_path(ex.cfg)
    store = UserStore(path)
    seven, _ = store.add("SEVEN", "pw", 7, n=2), store.add("EIGHT", "pw", 8, n=2)
    keys = ApiKeyStore(path.with_name("apikeys.json"))
    keys.create(seven, ["read", "trade"])
    assert _cli(["admin", "users", "--profile", "x", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["compId"], u["account"]) for u in listed] == [("EIGHT", 8), ("SEVEN", 7)]
    assert "digest" not in json.dumps(listed) and "salt" not in json.dumps(listed)
    with _Pump(ex):
        argv = ["admin", "remove-user", "--profile", "x", "--comp-id", "SEVEN", "--cancel-orders"]
        assert _cli(argv) == 0
    out = capsys.readouterr().out
    assert "user SEVEN removed (account 7 stays); 1 API key(s) revoked" in out
    assert "account 7: open orders cancelled" in out
    assert UserStore(path).get("SEVEN") is None and UserStore(path).get("EIGHT") is not None
    assert keys.keys_of("SEVEN") == []
    assert (_open(ex, 7), _open(ex, 8)) == (0, 1)
    assert _cli(["admin", "remove-user", "--profile", "x", "--comp-id", "SEVEN"]) == 1
    assert "no user 'SEVEN' (users: EIGHT)" in capsys.readouterr().err
