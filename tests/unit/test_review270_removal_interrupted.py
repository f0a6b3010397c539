"""Review 270: ``remove-user --cancel-orders`` interrupted at each point of its removal,
driven in process (no instance): the interrupt raised where a signal may land.

Reviewed: ``procs/admin/users.py`` (``remove_user``), after CI's make test sent review 247's
SIGTERM as the users file's write returned: the user gone, the command said only "ringex:
interrupted (SIGTERM)", the bid rested and a rerun found no user.

Faults found (each fixed; its test says what it was):
1. An interrupt inside ``store.remove`` once its write is made (the file no longer names
   the user) escaped the guard that names the cancel-all (the guard began after the call).
2. An interrupt inside ``store.remove`` left the admin client's connection open (only the
   later guard closed it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import pytest

from config.schema import RingexConfig
from procs.admin import users as admin_users
from procs.admin.client import AdminClient
from procs.admin.users import remove_user
from procs.common.apikeys import ApiKeyStore
from procs.common.topology import apikeys_path, users_path
from procs.common.users import UserStore
from tests.unit.test_review254_diff import venue


class Client:
    """An admin client that records what it is asked (the instance is not needed here)."""

    def __init__(self) -> None:
        self.closed = False
        self.cancelled: list[int] = []

    def cancel_all(self, account: int, symbol: str | None) -> None:
        self.cancelled.append(account)

    def close(self) -> None:
        self.closed = True


def _alice(tmp_path: Path) -> RingexConfig:
    cfg = venue(tmp_path, "i")
    alice = UserStore(users_path(cfg)).add("ALICE", "pw", 7, n=2)
    ApiKeyStore(apikeys_path(cfg)).create(alice, ["read", "trade"])
    return cfg


def _remove(cfg: RingexConfig, client: Client) -> None:
    args = argparse.Namespace(comp_id="ALICE", cancel_orders=True)
    remove_user(cfg, args, lambda: cast(AdminClient, client))


def test_an_interrupt_as_the_removal_s_write_returns_names_the_cancel_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the interrupt lands in ``UserStore.remove`` once the file is written.
    Expected: the user gone, the command names ``cancel-all --account 7`` (a rerun finds no
    user), the client closed. Was (fixed): "interrupted" alone."""
    cfg = _alice(tmp_path)
    written = UserStore.remove

    def remove_then_interrupted(
        store: UserStore, comp_id: str, *, session: int | None = None
    ) -> bool:
        written(store, comp_id, session=session)
        raise KeyboardInterrupt

    monkeypatch.setattr(UserStore, "remove", remove_then_interrupted)
    client = Client()
    with pytest.raises(KeyboardInterrupt):
        _remove(cfg, client)
    assert UserStore(users_path(cfg)).get("ALICE") is None
    assert "cancel-all --account 7" in capsys.readouterr().err
    assert client.closed


def test_an_interrupt_before_the_removal_s_write_says_no_removal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the interrupt lands in ``UserStore.remove`` before the file is written.
    Expected: the user stays (a rerun does the whole job), nothing said of a removal, the
    client closed. Was (fixed): the client left open."""
    cfg = _alice(tmp_path)

    def interrupted(store: UserStore, comp_id: str, *, session: int | None = None) -> bool:
        raise KeyboardInterrupt

    monkeypatch.setattr(UserStore, "remove", interrupted)
    client = Client()
    with pytest.raises(KeyboardInterrupt):
        _remove(cfg, client)
    assert UserStore(users_path(cfg)).get("ALICE") is not None
    assert "is removed" not in capsys.readouterr().err
    assert client.closed


def test_an_interrupt_in_the_keys_revocation_names_the_cancel_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: the interrupt lands while the user's API keys are revoked (13c66f5).
    Expected: the cancel-all named, nothing cancelled yet, the client closed."""
    cfg = _alice(tmp_path)

    def interrupted(*args: object) -> tuple[int, bool]:
        raise KeyboardInterrupt

    monkeypatch.setattr(admin_users, "_revoke_keys", interrupted)
    client = Client()
    with pytest.raises(KeyboardInterrupt):
        _remove(cfg, client)
    assert "cancel-all --account 7" in capsys.readouterr().err
    assert client.cancelled == [] and client.closed


def test_an_uninterrupted_removal_cancels_the_orders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scenario: no interrupt; no FIX session to wait for (the settle made short).
    Expected: the account's orders cancelled, said, the client closed."""
    cfg = _alice(tmp_path)
    monkeypatch.setattr(admin_users, "SETTLE_S", 0.0)
    monkeypatch.setattr(admin_users, "_session_ended", lambda *a: True)
    monkeypatch.setattr(admin_users, "_gateways_read", lambda *a: True)
    client = Client()
    _remove(cfg, client)
    assert client.cancelled == [7] and client.closed
    assert "account 7: open orders cancelled" in capsys.readouterr().out
