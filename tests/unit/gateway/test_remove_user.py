"""A user taken off the exchange (``ringex admin remove-user``: out of the users file, its API
keys revoked) is logged out of its FIX sessions within a gateway timer pass, and its REST
requests are refused; another user's session goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from procs.common.topology import users_path
from procs.common.users import UserStore
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Client, Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


def test_a_removed_users_sessions_end(harness: Harness) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        assert harness.gateway is not None
        bob, alice = Client("BOB"), Client("ALICE")
        rest = await client(url, "BOB", "bob-pw")
        try:
            for fix, password in ((bob, "bob-pw"), (alice, "alice-pw")):
                await fix.connect(harness.gateway.port)
                await fix.logon(password)
            assert (await rest.request("GET", "/api/v1/account"))[0] == 200
            UserStore(users_path(harness.cfg)).remove("BOB")  # what remove-user does first
            logout = await bob.expect("5", timeout=3.0)  # the next timer pass
            assert b"removed or changed by the operator" in logout.get(58)
            status, body = await rest.request("GET", "/api/v1/account")
            assert status == 401 and "BOB" in body["msg"]
            await alice.send("1", (112, "still-here"))
            assert (await alice.expect("0")).get(112) == b"still-here"
        finally:
            bob.close()
            alice.close()
            await rest.close()

    run(harness, scenario)
