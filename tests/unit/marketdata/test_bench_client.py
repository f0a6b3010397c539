"""bench-ws's cheap client check: the reads' trade counts against their first and last ids
catch what the full check (every id) catches, for a gap, a repeat and a reorder across reads."""

from __future__ import annotations

import asyncio

import pytest

from tests.bench.ws_clients import ClientContext, FeedClient

FRAME = (
    b'\x81\x7e\x00\x98{"stream":"btc-usd@trade","data":{"e":"trade","E":1763000000000,'
    b'"s":"BTC-USD","t":%d,"p":"50000.05","q":"0.0003","T":1763000000000,"m":false,"u":9}}'
)
DEPTH = (
    b'\x81\x7e\x00\x70{"stream":"btc-usd@depth","data":{"e":"depthUpdate","E":1763000000000,'
    b'"s":"BTC-USD","U":%d,"u":%d,"b":[],"a":[["50000.05","0.0003"]]}}'
)


def reads(*runs: list[int]) -> list[bytes]:
    return [b"".join(FRAME % t for t in ids) for ids in runs]


def feed(full: bool, data: list[bytes]) -> FeedClient:
    async def main() -> FeedClient:
        ctx = ClientContext(first_trade=10, last_trade=10_000, stamps=[0] * 20_000)
        client = FeedClient(1, "/", ctx, 0 if full else 1)
        assert client.full is full
        client.upgraded.set_result(None)
        for chunk in data:
            client.data_received(chunk)
        return client

    return asyncio.run(main())


@pytest.mark.parametrize("full", [True, False])
def test_in_order_trades_pass_in_any_read_sizes(full: bool) -> None:
    data = b"".join(reads(list(range(10, 60)), [60], list(range(61, 100))))
    cut = [data[:777], data[777:5000], data[5000:]]  # messages split across reads
    client = feed(full, cut)
    assert (client.stats.trades, client.stats.out_of_order, client.stats.next_trade) == (90, 0, 100)


@pytest.mark.parametrize("full", [True, False])
@pytest.mark.parametrize(
    "runs",
    [
        ([10, 11, 12], [14, 15]),  # a gap between reads
        ([10, 11, 13], [14]),  # a gap inside a read
        ([10, 11, 12], [12, 13]),  # a repeat
        ([10, 11, 12, 13, 13], [14]),  # a repeat inside a read (count > span)
    ],
)
def test_gaps_and_repeats_are_caught(full: bool, runs: tuple[list[int], ...]) -> None:
    assert feed(full, reads(*runs)).stats.out_of_order >= 1


def test_trades_before_the_phase_are_skipped_and_depth_checked_by_every_client() -> None:
    data = [b"".join(FRAME % t for t in (8, 9, 10, 11)) + DEPTH % (5, 6) + DEPTH % (8, 9)]
    full = feed(True, data)
    assert (full.stats.trades, full.stats.out_of_order, full.stats.depth_gaps) == (2, 0, 1)
    cheap = feed(False, data)
    assert (cheap.stats.trades, cheap.stats.out_of_order, cheap.stats.depth_gaps) == (2, 0, 1)
