"""A logon that resets the sequence numbers (141=Y) still delivers what was parked for the
session while it was away: a reset discards what the client has seen, never what it has not."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path

from procs.gateway.fix import frame
from procs.gateway.store import MessageStore
from tests.unit.gateway.harness import Client, Harness
from tests.unit.gateway.test_gateway import logged_on, order, run


async def filled_while_away(port: int) -> int:
    """ALICE rests a buy and logs out; BOB fills it. Returns ALICE's next MsgSeqNum."""
    alice = await logged_on(port)
    await alice.send("D", *order("s1", "2", "1.00", "100.00"))
    assert (await alice.expect("8")).get(150) == b"0"
    await alice.send("5")
    await alice.expect("5")
    await alice.aclose()
    bob = await logged_on(port, "BOB")
    await bob.send("D", *order("b1", "1", "1.00", "100.00"))
    await bob.expect("8")
    assert (await bob.expect("8")).get(39) == b"2"
    await asyncio.sleep(0.2)  # alice's fill is parked while she is away
    return alice.seq


def test_a_reset_logon_sends_what_was_parked_under_the_new_numbers(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        await filled_while_away(port)
        back = Client("ALICE")
        back.seq = 1
        await back.connect(port)
        logon = await back.logon(reset=True)
        assert (logon.get(34), logon.get(141)) == (b"1", b"Y")
        fill = await back.expect("8")
        assert (fill.get(34), fill.get(11), fill.get(39)) == (b"2", b"s1", b"2")
        assert fill.get(43) is None  # never sent before: not a possible duplicate
        await back.send("1", (112, "after"))
        beat = await back.expect("0")
        assert (beat.get(34), beat.get(112)) == (b"3", b"after")

    run(harness, scenario)


def test_what_a_kept_logon_offered_is_not_sent_again_by_a_later_reset(harness: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        next_in = await filled_while_away(port)
        kept = Client("ALICE")
        kept.seq = next_in
        await kept.connect(port)
        await kept.logon()
        await kept.send("2", (7, 4), (16, 4))  # the fill is seq 4 (logon, new, logout before)
        assert (await kept.expect("8")).get(43) == b"Y"
        await kept.send("5")
        await kept.expect("5")
        await kept.aclose()
        again = Client("ALICE")
        again.seq = 1
        await again.connect(port)
        await again.logon(reset=True)
        await again.send("1", (112, "nothing-else"))
        assert (await again.expect("0")).get(112) == b"nothing-else"  # no report in between

    run(harness, scenario)


def _stored(seq: int, msg_type: bytes, body: bytes) -> bytes:
    return frame(
        b"35=%s\x0149=RINGEX\x0156=ALICE\x0134=%d\x0152=20261123-10:00:00.000\x01%s"
        % (msg_type, seq, body)
    )


def test_the_store_keeps_what_was_parked_across_a_reopen(tmp_path: Path) -> None:
    store = MessageStore(tmp_path)
    store.add_outbound(1, _stored(1, b"A", b"98=0\x01108=30\x01"))
    store.park(2, _stored(2, b"8", b"37=1\x0111=a\x01"))
    store.park(3, _stored(3, b"9", b"37=2\x0111=b\x01"))
    store.close()
    reopened = MessageStore(tmp_path)
    assert reopened.unsent() == [(b"8", b"37=1\x0111=a\x01"), (b"9", b"37=2\x0111=b\x01")]
    reopened.logged_on()
    assert reopened.unsent() == []
    reopened.close()
    last = MessageStore(tmp_path)
    assert last.unsent() == []
    last.close()


def test_a_store_from_before_parking_was_tracked_opens_with_none_parked(tmp_path: Path) -> None:
    (tmp_path / "seqnums").write_bytes(struct.pack("<QQ", 7, 9))
    store = MessageStore(tmp_path)
    assert (store.next_in, store.next_out, store.unsent()) == (7, 9, [])
    store.close()
