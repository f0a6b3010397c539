"""A sixth hostile review of operations (issue 8): `ringex admin` argument checks and the
supervisor's plan from the config. Each test shows one bug and fails on the code as
reviewed; its docstring says what is right and why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from config.schema import RingexConfig
from procs.admin.client import AdminClient
from procs.common.record_codec import RecordCodec
from procs.common.records import CreateAccount, Transfer
from procs.common.topology import ADMIN_GATEWAY, ROUTER, gateway_commands
from procs.supervisor.plan import plan
from shm import Ring
from tests.unit.router.test_router import config
from tests.unit.test_review_admin_bugs import _cli, _use_config

CODEC = RecordCodec()


@pytest.fixture
def router_line(admin_rings: str) -> Iterator[Any]:
    """The admin command ring's router line: what ``ringex admin`` published is read here."""
    ring = Ring.attach(admin_rings, gateway_commands(ADMIN_GATEWAY), CODEC)
    consumer = ring.consumer(ROUTER)
    yield consumer
    consumer.close()
    ring.close()


def _fast_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin client's 10 s timeouts cut short: nobody answers in these tests."""
    monkeypatch.setattr(AdminClient.create_account, "__defaults__", (0.05,))
    monkeypatch.setattr(AdminClient.transfer, "__defaults__", (None, 0.05))


# -- 1. add-user --deposit with a negative or zero amount opens an account first -------------


@pytest.mark.parametrize("amount", ["-5", "0"])
def test_add_user_refuses_a_deposit_that_is_not_positive_before_opening_anything(
    amount: str,
    tmp_path: Path,
    admin_rings: str,
    router_line: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ringex admin deposit --amount -5`` is refused up front ("amount -5 must be
    positive"), and ``_add_user`` says it checks its arguments "before anything is opened
    or funded" (it converts every ``--deposit`` first). But ``add-user --deposit USD=-5``
    passes that check: the account is opened (CreateAccount published), then the deposit
    goes out as a *withdrawal* of 5 USD (a Transfer of -50000 units), the router refuses it
    (or, with a balance there, takes it), add-user exits 1 without storing the user, and the
    operator is left with an opened, orphan account. A deposit that is not positive is
    refused with exit 2, naming it, and nothing is sent."""
    _use_config(monkeypatch, config(admin_rings, tmp_path))
    _fast_admin(monkeypatch)
    argv = ["--profile", "x", "--username", "bob", "--password", "pw"]
    code = _cli(["admin", "add-user", *argv, "--deposit", f"USD={amount}"])
    sent = router_line.read(64)
    assert not sent, f"published before the deposit {amount} was refused: {sent}"
    assert code == 2


# -- 2. add-user --account 0 silently opens some other account --------------------------------


def test_add_user_refuses_account_zero_instead_of_picking_another(
    tmp_path: Path,
    admin_rings: str,
    router_line: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--account 0`` is an explicit value (argparse gives the int 0), but ``_add_user``
    tests ``args.account`` for truth: 0 is taken as "not given" and the next free account
    (100) is opened and bound to the user instead, with no word of it. Every other command
    refuses account 0 ("account 0 is outside 1..2**63-1", ``check_account``: 0 means every
    account in a mass cancel), and add-user refuses a negative one: 0 is refused the same
    way, exit 2, nothing sent."""
    _use_config(monkeypatch, config(admin_rings, tmp_path))
    _fast_admin(monkeypatch)
    argv = ["--profile", "x", "--username", "bob", "--password", "pw", "--account", "0"]
    code = _cli(["admin", "add-user", *argv])
    sent = router_line.read(64)
    opened = [r.account for r in sent if isinstance(r, CreateAccount)]
    moved = [r.account for r in sent if isinstance(r, Transfer)]
    assert not opened and not moved, f"--account 0 opened account(s) {opened}"
    assert code == 2


# -- 3. supervisor.nice for the replication source is accepted and never applied ---------------


def test_nice_of_the_replication_source_is_applied_to_it() -> None:
    """``supervisor.nice`` takes "the same names as ``cores``", and the config check accepts
    "replica" (``_check_processes``: known names) for the replication source: ``plan`` pins
    the ``replica-source`` process with ``cores["replica"]``. But ``plan`` looks niceness up
    by the spec's name, ``nice["replica-source"]``, which the config refuses ("names
    'replica-source', no process of this instance"), so ``nice = {replica = 5}`` loads, is
    silently ignored, and there is no spelling that sets the source's niceness at all. The
    name the config takes applies to the process, as it does for cores."""
    raw = {
        "replication": {"listen_port": 7000},
        "supervisor": {"cores": {"replica": [0]}, "nice": {"replica": 5}},
    }
    cfg = msgspec.convert(raw, RingexConfig)
    source = next(s for s in plan(cfg) if s.module == "procs.replica.main")
    assert source.cpus == (0,)  # cores["replica"] reaches it ...
    assert source.nice == 5, f"nice['replica'] = 5 not applied: {source.name} nice {source.nice}"
