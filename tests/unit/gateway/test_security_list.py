"""A FIX client learns the symbols it may trade and their steps over its own session:
SecurityListRequest (x) -> SecurityList (y), over real TCP with a simplefix client; the
fragments of a long list in-process (``security_list.answers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import simplefix  # ships no type information

from config.schema import SymbolConfig
from procs.gateway import dictionary, security_list
from procs.gateway.fix import FixMessage, FixReader, field, frame
from procs.gateway.instruments import Instruments
from tests.unit.gateway.harness import Client, Harness, run_scenario, small_ring_exchange


@pytest.fixture
def h(instance: str, tmp_path: Path) -> Iterator[Harness]:
    """ALICE (account 7), password "secret"; one symbol, BTC-USD: tick 0.05, lot 0.01."""
    yield small_ring_exchange(instance, tmp_path, 4096)


def entries(y: simplefix.FixMessage) -> list[dict[int, bytes]]:
    """The SecurityList's NoRelatedSym entries, each by tag."""
    tags = (55, 969, 15, 561, 562)
    count = int(y.get(146) or 0)
    return [{t: y.get(t, nth) for t in tags} for nth in range(1, count + 1)]


async def asked(client: Client, *pairs: tuple[int, object]) -> simplefix.FixMessage:
    await client.send("x", *pairs)
    return await client.expect("y", timeout=5.0)


def test_the_list_names_every_symbol_with_its_steps(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon("secret", reset=True)
        y = await asked(alice, (320, "all-1"), (559, 4))
        assert (y.get(320), y.get(560), y.get(393), y.get(893)) == (b"all-1", b"0", b"1", b"Y")
        assert entries(y) == [
            {55: b"BTC-USD", 969: b"0.05", 15: b"USD", 561: b"0.01", 562: b"0.01"}
        ]
        one = await asked(alice, (320, "one-1"), (559, 0), (55, "BTC-USD"), (263, 0))
        assert (one.get(560), entries(one)) == (b"0", entries(y))
        assert one.get(322) != y.get(322)  # each answer its own SecurityResponseID
        # a subscription is answered as a snapshot: the list changes only with a restart
        sub = await asked(alice, (320, "sub-1"), (559, 4), (263, 1))
        assert (sub.get(560), entries(sub)) == (b"0", entries(y))
        await alice.aclose()

    run_scenario(h, scenario)


def test_requests_it_cannot_answer_say_so(h: Harness) -> None:
    async def scenario(h: Harness, port: int) -> None:
        alice = Client("ALICE")
        await alice.connect(port)
        await alice.logon("secret", reset=True)
        unknown = await asked(alice, (320, "u"), (559, 0), (55, "DOGE-USD"))
        assert (unknown.get(560), unknown.get(146)) == (b"2", None)  # no instruments found
        for kind in (1, 2, 3):  # by security type, product, trading session: unsupported
            y = await asked(alice, (320, f"k{kind}"), (559, kind))
            assert (y.get(320), y.get(560), y.get(146)) == (f"k{kind}".encode(), b"1", None)
        stop = await asked(alice, (320, "stop"), (559, 4), (263, 2))  # no updates to stop
        assert stop.get(560) == b"1"
        # SecurityListRequestType 0 without its Symbol: a BusinessMessageReject naming it
        await alice.send("x", (320, "no-symbol"), (559, 0))
        j = await alice.expect("j", timeout=5.0)
        assert (j.get(372), j.get(379), j.get(380)) == (b"x", b"no-symbol", b"5")
        assert b"Symbol (55)" in j.get(58)
        # a type FIX 4.4 does not define: a session Reject (373=5, value out of range)
        await alice.send("x", (320, "bad"), (559, 9))
        reject = await alice.expect("3", timeout=5.0)
        assert (reject.get(371), reject.get(373)) == (b"559", b"5")
        # and the session goes on
        await alice.send("1", (112, "still-on"))
        assert (await alice.expect("0")).get(112) == b"still-on"
        await alice.aclose()

    run_scenario(h, scenario)


def _symbol(k: int) -> SymbolConfig:
    return SymbolConfig(name=f"S{k:03d}-USD", id=k, tick=5, lot=10, qty_decimals=3, min_qty=15)


def test_a_long_list_goes_in_fragments() -> None:
    """250 symbols: three SecurityLists of 100, 100 and 50 entries, TotNoRelatedSym 250 on
    each, LastFragment Y on the last only, in the config's order, each a valid message."""
    instruments = Instruments([_symbol(k) for k in range(1, 251)])
    request = FixReader(1 << 20)
    request.feed(frame(b"35=x\x01" + field(320, "long") + field(559, 4)))
    (msg,) = request.messages()
    assert isinstance(msg, FixMessage)
    bodies = security_list.answers(msg, instruments, b"r-1")
    assert isinstance(bodies, list) and len(bodies) == 3
    names: list[bytes] = []
    for n, body in enumerate(bodies):
        y = simplefix.FixParser()
        y.append_buffer(frame(b"35=y\x01" + body))
        parsed = y.get_message()
        head = b"35=y\x0149=EXCH\x0156=ALICE\x0134=%d\x0152=20261129-10:00:00.000\x01" % (n + 2)
        reader = FixReader(1 << 20)
        reader.feed(frame(head + body))
        (whole,) = reader.messages()
        assert isinstance(whole, FixMessage) and dictionary.first_fault(whole) is None
        assert parsed.get(393) == b"250" and parsed.get(322) == b"r-1"
        assert parsed.get(893) == (b"Y" if n == 2 else b"N")
        assert int(parsed.get(146)) == (50 if n == 2 else 100)
        got = entries(parsed)
        names += [e[55] for e in got]
        assert (got[0][561], got[0][562]) == (b"0.010", b"0.020")  # min 0.015 up to a lot
    assert names == [f"S{k:03d}-USD".encode() for k in range(1, 251)]
