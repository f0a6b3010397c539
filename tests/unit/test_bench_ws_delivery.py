"""bench-ws's delivered figures are measured on every client (tests/bench/ws_clients.py,
bench_ws.delivery): each client counts the trade and depth messages and the bytes it got,
and the run sums them. Before, only one client in ten counted depth messages, and the run
took the best one's count times the number of clients."""

from __future__ import annotations

import asyncio

from tests.bench.bench_ws import delivery
from tests.bench.ws_clients import ClientContext, FeedClient
from tests.unit.marketdata.test_bench_client import DEPTH, FRAME

HANDSHAKE = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"


def clients(count: int, reads: list[bytes], *, first_trade: int = 10) -> list[FeedClient]:
    """``count`` clients (every tenth reads every id), each fed ``reads`` after the
    handshake's response, which comes in the first read."""

    async def main() -> list[FeedClient]:
        ctx = ClientContext(first_trade=first_trade, last_trade=10_000, stamps=[0] * 20_000)
        made = [FeedClient(1, "/", ctx, k) for k in range(count)]
        for client in made:
            client.data_received(HANDSHAKE + reads[0])
            for chunk in reads[1:]:
                client.data_received(chunk)
        return made

    return asyncio.run(main())


def test_every_client_counts_its_depth_messages_bytes_and_reads() -> None:
    stream = b"".join(
        [FRAME % t for t in range(10, 20)] + [DEPTH % (1, 3)]
        + [FRAME % t for t in range(20, 30)] + [DEPTH % (4, 4), DEPTH % (6, 7)]
    )  # fmt: skip
    reads = [stream[:700], stream[700:2100], stream[2100:]]  # messages cut across reads
    made = clients(2, reads)
    full, cheap = made
    assert (full.stats.every_id, cheap.stats.every_id) == (True, False)
    for client in made:
        s = client.stats
        assert (s.trades, s.trade_messages, s.out_of_order) == (20, 20, 0)
        assert (s.depth, s.depth_gaps) == (3, 1)  # 4..4 then 6..7: 5 is missing
        assert (s.bytes, s.reads) == (len(stream), 3)  # the handshake's response not counted


def test_delivered_is_the_sum_of_what_every_client_counted() -> None:
    """Twelve clients; the server fell behind on two, which got fewer depth diffs. The old
    figure, the best client's depth count times 12, claimed 12 * 3 depth messages."""
    base = [FRAME % t for t in range(10, 30)]
    rich = b"".join([*base[:10], DEPTH % (1, 1), *base[10:], DEPTH % (2, 2), DEPTH % (3, 3)])
    poor = b"".join([*base[:10], DEPTH % (1, 3), *base[10:]])  # conflated: one diff for three
    stats = [c.stats.__dict__ for c in clients(10, [rich])]
    stats += [c.stats.__dict__ for c in clients(2, [poor])]
    row = delivery(stats, elapsed_s=2.0)
    assert row["delivered_trades"] == 12 * 20
    assert row["delivered_depth"] == 10 * 3 + 2 * 1  # not 12 * 3
    assert row["delivered"] == 12 * 20 + 32 and row["delivered_per_s"] == (240 + 32) // 2
    assert row["depth_per_client"] == {"min": 1, "max": 3}
    assert row["delivered_bytes"] == 10 * len(rich) + 2 * len(poor)
    assert row["delivered_counted_by"] == 12
    assert row["clients_reading_every_trade_id"] == 2  # index 0 of each group of clients
    assert row["messages_per_read"] == round(272 / 12, 1)


def test_a_trade_message_whose_id_does_not_read_is_wrong_for_a_full_client() -> None:
    """The full client counts trade messages too; one it cannot read an id from (mangled)
    counts against it rather than vanishing from both its count and its check."""
    mangled = FRAME.replace(b'"t":%d', b'"t":x%d')
    stream = b"".join([FRAME % 10, mangled % 11, FRAME % 12])
    full, cheap = clients(2, [stream])
    assert full.stats.trade_messages == cheap.stats.trade_messages == 3
    assert full.stats.out_of_order >= 1
    # The cheap check reads the first and last ids only: count 3, span 10..12, it passes.
    # That is why a client in every ten reads every id (FeedClient's docstring).
    assert cheap.stats.out_of_order == 0
