"""`ringex admin keys` lists the REST API's keys (never a secret) and `ringex admin
revoke-key` revokes one by its id: its requests get 401 within a second, the user's other
key goes on. Against a running gateway with its REST API."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import procs.cli
from procs.gateway.rest import RestApi
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import client, rest_exchange, run


@pytest.fixture
def harness(instance: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for h in rest_exchange(instance, tmp_path):
        monkeypatch.setattr(procs.cli, "load_profile", lambda _name, cfg=h.cfg: cfg)
        yield h


def admin(*argv: str) -> int:
    try:
        return procs.cli.main(["admin", argv[0], "--profile", "x", *argv[1:]])
    except SystemExit as exc:
        return int(exc.code or 0)


def test_keys_are_listed_without_secrets_and_one_is_revoked(
    harness: Harness, capsys: pytest.CaptureFixture[str]
) -> None:
    async def scenario(api: RestApi, url: str) -> None:
        first = await client(url, "ALICE", "alice-pw", "read")
        second = await client(url, "ALICE", "alice-pw")
        bob = await client(url, "BOB", "bob-pw")
        try:
            assert admin("keys", "--json") == 0
            listed = json.loads(capsys.readouterr().out)
            assert [(k["compId"], k["apiKey"]) for k in listed] == [
                ("ALICE", first.api_key), ("ALICE", second.api_key), ("BOB", bob.api_key)
            ]  # fmt: skip
            assert listed[0]["scopes"] == ["read"] and listed[1]["scopes"] == ["read", "trade"]
            text = json.dumps(listed)
            assert all(c.secret not in text for c in (first, second, bob))
            assert admin("keys", "--comp-id", "BOB") == 0
            out = capsys.readouterr().out
            assert bob.api_key in out and first.api_key not in out and bob.secret not in out
            assert admin("revoke-key", "--api-key", first.api_key) == 0
            assert "of ALICE (account" in capsys.readouterr().out
            await asyncio.sleep(0.6)  # each gateway looks at the key file at most that often
            status, body = await first.request("GET", "/api/v1/account")
            assert status == 401, body
            assert (await second.request("GET", "/api/v1/account"))[0] == 200
            assert admin("revoke-key", "--api-key", first.api_key) == 1
            assert "no API key" in capsys.readouterr().err
            assert admin("keys", "--comp-id", "NOBODY") == 0
            assert "no API keys of NOBODY" in capsys.readouterr().out
        finally:
            for c in (first, second, bob):
                await c.close()

    run(harness, scenario)
