"""A seventh review of ``ringex admin add-user``: a deposit refused after the account is
opened (and earlier deposits made). The test fails on the code it was written against
because of the bug its docstring names; it runs the command against a router stepped in a
thread, as its process would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.admin.client import AdminClient
from procs.common.result_codes import ResultCode
from procs.common.topology import users_path
from procs.common.users import UserStore
from tests.unit.router.test_router import BTC, USD, Exchange, config
from tests.unit.test_review_admin_bugs import _cli, _Pump, _use_config

#: 9 * 10**18 minor units (4 decimals): what is left under 2**63 - 1 is below 10**18.
NEAR_LIMIT_USD = "900000000000000"


@pytest.fixture
def ex(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    exchange = Exchange(config(instance, tmp_path))
    yield exchange
    exchange.stop()


def test_a_refused_later_deposit_still_stores_the_user_and_says_what_went_through(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``add-user --account 100 --deposit BTC=1 --deposit USD=100000000000000`` with the
    exchange's USD near its 2**63 - 1 total: the account is opened, BTC 1 is deposited, and
    the USD deposit is refused (BALANCE_LIMIT). ``_add_user`` returns 1 at the refusal,
    before ``store.add``: the account holds 1 BTC and no user logs on to it, and the only
    word is "deposit USD ...: BALANCE_LIMIT" (nothing says BTC went in). Expected: the user
    stored with account 100 (its account is open), a non-zero exit, and a report naming the
    deposit made (BTC 1), the one refused (USD, BALANCE_LIMIT) and the one never sent."""
    _use_config(monkeypatch, ex.cfg)
    with _Pump(ex):
        client = AdminClient(ex.cfg)
        try:  # someone else's account holds most of what USD can total
            assert client.create_account(50, timeout_s=5).code == ResultCode.OK
            assert client.transfer(50, "USD", NEAR_LIMIT_USD, timeout_s=5).code == ResultCode.OK
        finally:
            client.close()
        argv = ["admin", "add-user", "--profile", "x", "--username", "carol", "--password", "p"]
        deposits = ["BTC=1", "USD=100000000000000", "USD=2"]
        code = _cli([*argv, "--account", "100", *(f"--deposit={d}" for d in deposits)])
    out, err = capsys.readouterr()
    assert ex.router.sequencer.accounts.balance(100, BTC) == (10_000, 0)
    assert ex.router.sequencer.accounts.balance(100, USD) == (0, 0)
    user = UserStore(users_path(ex.cfg)).get("carol")
    assert user is not None, f"account 100 opened and funded, no user for it: {out!r} {err!r}"
    assert user.account == 100
    assert code != 0
    assert "deposited BTC 1" in out, out
    assert "USD 100000000000000: BALANCE_LIMIT" in err, err
    assert "not sent: USD 2" in err, err
