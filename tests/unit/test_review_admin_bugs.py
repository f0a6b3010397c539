"""Hostile review of the administration path (`ringex admin` -> admin ring -> router ->
journal -> reply; the users file): each test failed on the code as reviewed and passes
since its fix."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import procs.cli
from config.schema import RingexConfig
from procs.admin.client import AdminClient, AdminError, to_minor_units
from procs.cli import main
from procs.common.record_codec import RecordCodec
from procs.common.records import AccountReply, Record, Transfer
from procs.common.result_codes import ResultCode
from procs.common.topology import (
    ADMIN_GATEWAY,
    ROUTER,
    gateway_commands,
    users_path,
)
from procs.common.users import UserStore
from procs.router.main import RouterShell
from shm import Ring
from tests.unit.router.test_router import USD, Exchange, config

CODEC = RecordCodec()


def _cli(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


@pytest.fixture
def ex(instance: str, tmp_path: Path) -> Iterator[Exchange]:
    """Every ring of an instance (the admin ring included), a router and a matcher shell."""
    exchange = Exchange(config(instance, tmp_path))
    yield exchange
    exchange.stop()


class _Pump:
    """Steps the router and the matcher in a thread, as their processes would."""

    def __init__(self, ex: Exchange) -> None:
        self.ex = ex
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        ex = self.ex
        while not self._stop.is_set():
            ex.router.step(timeout_s=0.001)
            ex.matcher.step(timeout_s=0.001)
            for tap in ex.taps:
                tap.read(4096)

    def __enter__(self) -> _Pump:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _pump(ex: Exchange) -> None:
    while ex.router.step(timeout_s=0.001) + ex.matcher.step(timeout_s=0.001):
        for tap in ex.taps:
            tap.read(4096)
    ex.router.settle()


def _use_config(monkeypatch: pytest.MonkeyPatch, cfg: RingexConfig) -> None:
    """`ringex admin --profile x` loads the in-process exchange's config."""
    monkeypatch.setattr(procs.cli, "load_profile", lambda _name: cfg)


def _published(instance: str) -> list[Record]:
    """What the router would read from the admin ring."""
    ring = Ring.attach(instance, gateway_commands(ADMIN_GATEWAY), CODEC)
    router = ring.consumer(ROUTER)
    try:
        return router.read(64)
    finally:
        router.close()
        ring.close()


# -- the users file ----------------------------------------------------------------------------


def test_two_add_users_at_once_keep_both_users_with_distinct_sessions(tmp_path: Path) -> None:
    """`_add_user` opens the store, then spends the admin round trips (up to seconds) before
    ``store.add``; two operators (or scripts) adding users at once each hold the file as it
    was and the second ``_save`` overwrites the first one's user."""
    path = tmp_path / "users.json"
    first, second = UserStore(path), UserStore(path)  # two `ringex admin add-user` processes
    first.add("ALICE", "pw-a", 100, n=2)
    second.add("BOB", "pw-b", 101, n=2)
    users = {u.comp_id: u for u in UserStore(path).users()}
    assert set(users) == {"ALICE", "BOB"}
    assert users["ALICE"].session != users["BOB"].session


def test_add_user_default_account_is_never_an_existing_funded_account(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_config(monkeypatch, ex.cfg)
    with _Pump(ex):
        client = AdminClient(ex.cfg)
        try:  # `ringex admin create-account --account 100` + a deposit: someone's money
            assert client.create_account(100, timeout_s=5).code == ResultCode.OK
            assert client.transfer(100, "USD", "1000", timeout_s=5).code == ResultCode.OK
        finally:
            client.close()
        argv = ["admin", "add-user", "--profile", "x", "--username", "mallory", "--password", "p"]
        code = _cli(argv)
    user = UserStore(users_path(ex.cfg)).get("mallory")
    # refused, or given an account of its own: never the funded account 100
    assert code != 0 or (user is not None and user.account != 100)


# -- idempotency and replies -------------------------------------------------------------------


def test_a_deposit_journaled_before_a_router_crash_is_answered_ok(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = AdminClient(ex.cfg)
    try:
        with _Pump(ex):
            assert client.create_account(100, timeout_s=5).code == ResultCode.OK

        def crash(*_args: object) -> None:
            raise RuntimeError("router killed after the journal write")

        monkeypatch.setattr(ex.router, "_flush_replies", crash)
        ref = 777
        client._out.publish(Transfer(0, 0, ADMIN_GATEWAY, 0, ref, 100, USD, 50_000, 4242))
        with pytest.raises(RuntimeError):
            for _ in range(100):
                ex.router.step(timeout_s=0.001)
        ex.router.close()  # the crash: the gateway rings stay uncommitted
        ex.router = RouterShell(ex.cfg)  # the supervisor restarts it: recovery
        _pump(ex)
        replies = [
            r
            for r in client._in.take(64, timeout_s=0.5)
            if isinstance(r, AccountReply) and r.client_ref == ref
        ]
        assert ex.router.sequencer.accounts.balance(100, USD) == (50_000, 0)  # applied once
        # what `ringex admin deposit` prints and exits with: the first reply for its ref
        assert replies and replies[0].code == ResultCode.OK
    finally:
        client.close()


def test_retrying_a_timed_out_deposit_does_not_deposit_twice(
    ex: Exchange, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _use_config(monkeypatch, ex.cfg)
    with _Pump(ex):
        client = AdminClient(ex.cfg)
        assert client.create_account(100, timeout_s=5).code == ResultCode.OK
        client.close()
    # the router is busy (or restarting): no answer within the client's timeout
    monkeypatch.setattr(AdminClient.transfer, "__defaults__", (None, 0.05))
    argv = ["admin", "deposit", "--profile", "x", "--account", "100", "--asset", "USD"]
    assert _cli([*argv, "--amount", "5"]) == 1  # "no answer ... retry with --key K"
    told = capsys.readouterr().err
    key = told.split("--key ")[1].split()[0]
    assert _cli([*argv, "--amount", "5", "--key", key]) == 1  # the retry the message asks for
    _pump(ex)  # the router gets to them
    assert ex.router.sequencer.accounts.balance(100, USD)[0] == 50_000  # 5 USD, 4 decimals


def test_idempotency_key_zero_is_kept_or_refused(tmp_path: Path, admin_rings: str) -> None:
    cfg = config(admin_rings, tmp_path)
    client = AdminClient(cfg)
    try:
        for _ in range(2):  # a timeout, then the retry with the same key
            with pytest.raises(AdminError):
                client.transfer(100, "USD", "5", key=0, timeout_s=0.02)
    finally:
        client.close()
    keys = {r.key for r in _published(admin_rings) if isinstance(r, Transfer)}
    assert len(keys) <= 1


@pytest.mark.parametrize("key", [-1, 2**63, 2**64], ids=["negative", "2**63", "2**64"])
def test_an_idempotency_key_the_router_cannot_read_is_refused(
    key: int, tmp_path: Path, admin_rings: str
) -> None:
    """`ringex admin deposit --key -1` waits 10 s and says "is it running?": the router logs
    a RecordDecodeError and skips the record; 2**64 is a traceback (EncodeError)."""
    cfg = config(admin_rings, tmp_path)
    client = AdminClient(cfg)
    try:
        with pytest.raises(AdminError):
            client.transfer(100, "USD", "5", key=key, timeout_s=0.02)
    finally:
        client.close()
    _published(admin_rings)  # RecordDecodeError: the router skips it, nobody answers


# -- amounts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount", ["0.000099999999999999999999999999999", "1.0000000000000000000000000000001"]
)
def test_an_amount_with_too_many_decimals_is_refused_not_rounded(
    amount: str, tmp_path: Path
) -> None:
    cfg = config("unused", tmp_path)  # USD: 4 decimals
    with pytest.raises(AdminError, match="decimal places"):
        print(to_minor_units(cfg, "USD", amount))
