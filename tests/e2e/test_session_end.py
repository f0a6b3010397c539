"""The end of the trading session in the whole exchange (`ringex run`, real processes over
shm, a FIX client): `ringex admin end-session` expires the resting DAY orders (ExecType and
OrdStatus C, Expired) of the symbol it names, then of every symbol, and a GTC order rests on
through both; the supervisor's daily end (`supervisor.session_end_utc`), missed while the
instance was down, is sent once it runs again."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from config import load_profile
from procs.common.run_files import read_json
from procs.common.types import TimeInForce
from procs.core.recovery import recover
from procs.core.resting import order_from_fields
from procs.supervisor.session_clock import DAY_NS, MINUTE_NS, latest_end
from procs.supervisor.session_end import session_end_path
from tests.e2e.running import ringex, running_exchange
from tests.unit.gateway.harness import Client, utc

DAY, GTC = "0", "1"


async def sell(client: Client, ref: str, symbol: str, tif: str, price: str) -> None:
    await client.send(
        "D", (11, ref), (55, symbol), (54, "2"), (60, utc()), (38, "1"), (40, "2"),
        (44, price), (59, tif),
    )  # fmt: skip


async def report(client: Client) -> tuple[bytes, bytes, bytes]:
    """(ClOrdID, ExecType, OrdStatus) of the next execution report."""
    msg = await client.expect("8", timeout=10)
    return msg.get(11), msg.get(150), msg.get(39)


def test_end_session_expires_day_orders_and_gtc_orders_rest(instance: str, tmp_path: Path) -> None:
    with running_exchange(instance, tmp_path, database=False) as profile:
        port = load_profile(str(profile)).gateways[0].port
        ringex(profile, "admin", "add-user", "--username", "MM", "--password", "pw",
               "--deposit", "BTC=10", "--deposit", "ETH=10")  # fmt: skip

        async def session() -> None:
            mm = Client("MM")
            await mm.connect(port)
            await mm.logon("pw")
            await sell(mm, "day-btc", "BTC-USD", DAY, "100.00")
            await sell(mm, "gtc-btc", "BTC-USD", GTC, "101.00")
            await sell(mm, "day-eth", "ETH-USD", DAY, "50.00")
            acks = [await report(mm) for _ in range(3)]
            assert acks == [
                (b"day-btc", b"0", b"0"), (b"gtc-btc", b"0", b"0"), (b"day-eth", b"0", b"0")
            ]  # fmt: skip

            said = ringex(profile, "admin", "end-session", "BTC-USD")
            assert "end-session BTC-USD: sent" in said
            assert await report(mm) == (b"day-btc", b"C", b"C")  # only BTC-USD's DAY order

            said = ringex(profile, "admin", "end-session")
            assert "end-session every symbol: sent" in said
            assert await report(mm) == (b"day-eth", b"C", b"C")  # BTC-USD's GTC: not

            # the GTC order still rests: its cancel is taken
            await mm.send(
                "F", (41, "gtc-btc"), (11, "cxl"), (55, "BTC-USD"), (54, "2"), (60, utc())
            )
            assert await report(mm) == (b"cxl", b"4", b"4")
            await mm.aclose()

        asyncio.run(session())


def test_a_session_end_missed_while_down_is_sent_at_the_next_start(
    instance: str, tmp_path: Path
) -> None:
    """DAY and GTC orders rest when the instance stops; it was down across today's end (the
    last end sent, remembered in the run directory, is yesterday's): started again with the
    schedule, the supervisor sends END_OF_SESSION once, and only the GTC order is left."""
    with running_exchange(instance, tmp_path, database=False) as profile:
        port = load_profile(str(profile)).gateways[0].port
        ringex(profile, "admin", "add-user", "--username", "MM", "--password", "pw",
               "--deposit", "BTC=10")  # fmt: skip

        async def rest_two() -> None:
            mm = Client("MM")
            await mm.connect(port)
            await mm.logon("pw")
            await sell(mm, "day-btc", "BTC-USD", DAY, "100.00")
            await sell(mm, "gtc-btc", "BTC-USD", GTC, "101.00")
            assert [(await report(mm))[1] for _ in range(2)] == [b"0", b"0"]
            await mm.aclose()

        asyncio.run(rest_two())
    cfg = load_profile(str(profile))
    now = time.time_ns()
    minute = now // MINUTE_NS % (DAY_NS // MINUTE_NS)  # this minute's end has come
    today = latest_end(now, minute)
    record = session_end_path(cfg)
    record.write_text(json.dumps({"end_ns": today - DAY_NS}))  # yesterday's went
    schedule = f'[supervisor]\nsession_end_utc = "{minute // 60:02d}:{minute % 60:02d}"\n'
    with running_exchange(instance, tmp_path, schedule, database=False) as profile:
        deadline = time.monotonic() + 20
        while (read_json(record) or {}).get("end_ns", 0) < today:
            assert time.monotonic() < deadline, f"no session end sent: {read_json(record)}"
            time.sleep(0.1)
    # stopped (the rings drained first): the journal says what the books hold
    (matcher,) = recover(load_profile(str(profile))).matchers.values()
    (book,) = [b for b in matcher.state().books if b.symbol == cfg.symbol("BTC-USD").id]
    assert [order_from_fields(f).tif for f in book.orders] == [TimeInForce.GTC]
