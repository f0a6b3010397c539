"""The gateway's order log stamps each logged command's image with the journal schema id of
its layout, and a gateway of another layout (an upgrade to a build of other journaled
commands) passes over those images at its start rather than decode them as its own: one
would read as another command, and be sent again (``restart._own_layout``)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from procs.common.record_codec import RecordCodec
from procs.gateway.order_log import COMMAND, OrderLog
from tests.unit.gateway.harness import Harness, close_all, config, settled
from tests.unit.gateway.test_gateway import logged_on, order

CODEC = RecordCodec()


def _probe(path: Path) -> tuple[dict[int, tuple[int, bytes]], dict[int, int]]:
    log = OrderLog(path)
    try:
        recovered = log.load()
        return recovered.commands, recovered.command_schemas
    finally:
        log.close()


def test_a_command_of_another_layout_in_the_log_is_passed_over_at_the_start(
    instance: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = config(instance, tmp_path)
    h = Harness(cfg)
    h.add_user("ALICE", "secret", 7)
    h.fund(7)
    where: dict[str, object] = {}

    async def first() -> None:
        await h.start()
        gw = h.gateway
        assert gw is not None
        alice = await logged_on(gw.port)
        await alice.send("D", *order("one", "1", "1.00", "100.00"))
        ack = await alice.expect("8")
        assert ack.get(150) == b"0"
        await settled(lambda: not gw._unpublished)
        where.update(path=gw.order_log.path, created=gw.producer.ring.created_ns,
                     next=gw.producer.sequence)  # fmt: skip
        await close_all()
        await h.stop()

    asyncio.run(first())
    path = where["path"]
    assert isinstance(path, Path)
    commands, schemas = _probe(path)
    assert commands and set(schemas.values()) == {CODEC.journal_schema_id}  # stamped

    # an image another build logged, not yet published: this build would publish it as its own
    log = OrderLog(path)
    log.load()
    log.write([(COMMAND, where["next"], where["created"], b"\xff" * CODEC.slot_size, 0x1234)])
    log.close()

    async def second() -> int:
        await h.start()  # decoding it raised here, or published another command
        gw = h.gateway
        assert gw is not None
        published = gw.producer.sequence
        await close_all()
        await h.stop()
        return published

    with caplog.at_level(logging.WARNING, logger="ringex.gateway"):
        assert asyncio.run(second()) == where["next"]
    h.close()
    assert any("1 command(s) logged by a build of other" in r.getMessage() for r in caplog.records)
