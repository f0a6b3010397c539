"""A feed request weighs one more for each ``NAMES_PER_REQUEST`` distinct stream names it
carries (review 47): a name costs the shared loop about a tenth of a request, so a
connection that names many streams in each request reaches its budget sooner, and one that
repeats a name pays for it once."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from websockets.exceptions import ConnectionClosed

from procs.marketdata.connection import MAX_REQUESTS_PER_S, NAMES_PER_REQUEST, POLICY_VIOLATION

from .rig import Rig
from .test_adversarial_ws import run

#: Every stream name of the rig's two symbols: 20 distinct names, a request of weight 3.
NAMES = [
    f"{symbol}@{kind}"
    for symbol in ("btc-usd", "eth-usd")
    for kind in (
        "trade", "depth", "ticker", "status",
        *(f"kline_{i}" for i in ("1m", "5m", "15m", "1h", "4h", "1d")),
    )
]  # fmt: skip
WEIGHT = 1 + len(NAMES) // NAMES_PER_REQUEST


async def _send_all(rig: Rig, params: list[str], count: int) -> tuple[int, int | None]:
    """``count`` UNSUBSCRIBEs of ``params`` at once: (answers read, close code)."""
    answered = 0
    async with rig.client() as c:
        with contextlib.suppress(ConnectionClosed):
            for k in range(count):
                await c.ws.send(json.dumps({"method": "UNSUBSCRIBE", "params": params, "id": k}))
            while answered < count:
                msg: dict[str, Any] = json.loads(await c.ws.recv())
                answered += "result" in msg
        return answered, c.ws.close_code


def test_many_distinct_names_weigh_and_repeated_ones_do_not(instance: str) -> None:
    # within the budget as requests of one name; twice past it weighed (the budget refills
    # as they are sent: with +50, a loaded machine's slower sending stayed within it)
    count = 2 * MAX_REQUESTS_PER_S // WEIGHT

    async def body(rig: Rig) -> None:
        answered, code = await _send_all(rig, NAMES, count)
        assert code == POLICY_VIOLATION and answered < count, (answered, code)
        repeated = [NAMES[0]] * len(NAMES)  # one distinct name: weight 1
        assert await _send_all(rig, repeated, count) == (count, None)

    run(instance, body)
