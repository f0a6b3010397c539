"""Mutual TLS on the replication link (``replication.tls_cert``, ``tls_key``, ``tls_ca``):
a standby with a certificate of the link's CA follows its primary; a peer without one, plain
TCP or TLS alone, ends at the handshake, before the source reads a message of it, so it is
shipped nothing (review 95: users.json and apikeys.json went to any peer that sent a Hello,
and one Hello of a large epoch fenced the primary).

The tests' self-signed certificate (``tests/unit/gateway/tls``) is its own CA here: both
sides present it and trust it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import msgspec
import pytest

from config.schema import ReplicationConfig, RingexConfig
from procs.common.epochs import Epochs
from procs.common.tls import TlsError, replication_context
from procs.common.topology import journal_dir
from procs.replica import wire
from procs.replica.source import ReplicationSource
from tests.unit.gateway.test_tls import CERT, KEY
from tests.unit.replica.test_review_replica_bugs import append, following, pair, until


def _mutual(cfg: RingexConfig) -> RingexConfig:
    rep = msgspec.structs.replace(cfg.replication, tls_cert=CERT, tls_key=KEY, tls_ca=CERT)
    return msgspec.structs.replace(cfg, replication=rep)


async def _hello(port: int, tls: ssl.SSLContext | None) -> object:
    """A peer's Hello once the source listens, and what the source answers it; an error of
    the handshake is raised."""
    for _ in range(500):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        except ConnectionRefusedError:
            await asyncio.sleep(0.01)
            continue
        try:
            await wire.send(writer, wire.Hello(1, wire.GENESIS))
            return await wire.receive(reader, silence_s=5)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    raise AssertionError(f"nothing listens on port {port}")


def test_a_standby_with_the_links_certificate_follows(tmp_path: Path) -> None:
    primary, secondary = (_mutual(cfg) for cfg in pair(tmp_path))
    append(primary, 1, 3)

    async def scenario() -> None:
        async with following(primary, secondary) as (_, standby, _):
            await until(lambda: standby.next_seq > 3, 10.0)

    asyncio.run(scenario())


@pytest.mark.parametrize("peer", ["plain TCP", "TLS without a certificate"])
def test_a_peer_without_the_links_certificate_is_shipped_nothing(tmp_path: Path, peer: str) -> None:
    """The Hello of review 95's fake standby (and a large epoch's, which fenced the primary)
    never reaches the source: its connection ends at the handshake, nothing is read from it
    or shipped to it, and the primary's epochs stay as they were."""
    primary, _ = (_mutual(cfg) for cfg in pair(tmp_path))
    append(primary, 1, 3)
    port = primary.replication.listen_port
    before = Epochs.load(journal_dir(primary))
    got: list[object] = []

    async def scenario() -> None:
        source = ReplicationSource(primary)
        serving = asyncio.create_task(source.run())
        try:
            tls = None
            if peer != "plain TCP":
                tls = ssl.create_default_context(cafile=CERT)
                tls.check_hostname = False  # it trusts the source: the source refuses it
            with contextlib.suppress(OSError, EOFError, asyncio.IncompleteReadError):
                got.append(await _hello(port, tls))
        finally:
            source.stopping.set()
            await serving
            source.close()

    asyncio.run(scenario())
    assert got == [], got
    assert Epochs.load(journal_dir(primary)) == before


def test_a_link_given_part_of_its_tls_is_refused_at_load_naming_what_is_missing() -> None:
    with pytest.raises(msgspec.ValidationError, match="tls_cert, tls_key set and tls_ca not"):
        msgspec.convert({"tls_cert": CERT, "tls_key": KEY}, type=ReplicationConfig)
    rep = ReplicationConfig(tls_cert=CERT, tls_key=KEY, tls_ca="/nowhere/ca.pem")
    with pytest.raises(TlsError, match=r"/nowhere/ca\.pem does not exist"):
        replication_context(rep, server=True)
