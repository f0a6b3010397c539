"""Review 151: an audit of "every size taken from a client has a limit", edge by edge.

Method: every quantity a remote client (not the operator's config) can make the exchange
keep or grow was listed from the README's edges and the code (FIX gateway, REST API and
private stream, market-data feed and page), its limit found in code or config, and where
the earlier reviews (31, 35, 37, 38, 63, 93, 95, the slot and connection tests) had not
pinned it, grown past where a limit should be against a real server: ``rest_rig.py``'s
exchange (real HTTP and FIX over TCP in front of real rings), the tables measured through
the objects in-process, a limit shrunk where the real one takes too long to reach (as
review 37 shrank the order log's frame).

Sound: API keys per user (the 21st login evicts the oldest and names it); a parameter's
length (``newClientOrderId`` of 65 characters refused naming 65 and 64); the address
limiter's table (as many distinct source addresses as it likes, it keeps ``max_keys``).

Faults (each a strict xfail when written; both fixed since, the same session: the streams'
sweep removes the slot files no stream holds once a minute, and a ClOrdID or OrigClOrdID
over 64 characters is a session Reject, 373=5, naming its length and the limit):

1. procs/gateway/stream_slots.py:46-63 (with procs/common/apikeys.py:210-214): a private
   stream's per-key slot is a lock file named by the key's digest, and no file is ever
   removed. A login is a new key (the oldest evicted past ``max_keys_per_user``), so a user
   who logs in and streams, again and again, leaves one file per key that ever streamed:
   25 logins, 20 live keys, 25 key files (2 logins/s per address, unbounded over time and
   over addresses; the README calls them "a limit's worth per key ... that ever streamed").
2. procs/gateway/orders.py:259: a FIX ClOrdID has no limit short of ``max_message_bytes``
   (8 KiB, configurable to 1 MiB): a 7,000-byte one is accepted, kept in the order's
   memory (and the newest 10,000 finished orders', ``FINISHED_KEPT``), the order log, each
   report, and shown over REST as a ``clientOrderId`` that REST's own limit (64) refuses
   as ``origClientOrderId``: the order is listed but cannot be named there.

The audit (quantity: its limit, where; "pinned" names the review that grew it already):

===========================================  ===============================================
quantity a client grows                       limit (where)
===========================================  ===============================================
API keys per user                             max_keys_per_user 20, oldest evicted
                                              (apikeys.py:210); sound here
keys ever made (login = new key)              none: fault 1's files; the file holds 20/user
slot lock files (streams/)                    none per key (fault 1); account files bounded
private streams per key / account / gateway   5 / 10 / max_streams (stream_slots.py); pinned
frames a stream client sends                  5,000/s, 4 KiB each (private_stream.py:66,172)
REST connections, per address / in all        500 / 2,000, 503 (rest_connections.py); pinned
pipelined requests per REST connection        16 queued (rest_fast.py); pinned (38)
request head / body / time                    16 KiB / max_body_bytes / 10 s; pinned (38)
parameters per request, value length          24, 64 (password, signature longer)
                                              (rest_params.py:74-79); sound here
label / scopes / username / password          64 / 64 / 64 / MAX_PASSWORD_CHARS
history ``limit``, time ranges                1..1000, checked (rest_history.py); pinned (38)
rate-limit tables (key, address, login,       max_keys 100,000, LRU (limits.py:46); names
username, FIX address)                        past 64 kept as a digest; sound here
signature replay memory                       replay_capacity 1M, forgets the soonest to
                                              expire (signing.py:283); above a gateway's
                                              signed throughput x 61 s: not reached
header-set cache                              MAX_HEADER_SETS 256 (fast_request.py:20)
open orders per account                       risk.max_open_orders 1,000 (router)
commands per account                          risk.max_commands_per_s 1,000 (router)
REST orders awaiting an answer                key rate x order_timeout_s; pinned (37)
FIX sessions, pending per address             max_sessions, max_pending_per_address
FIX messages before Logon / junk / inbound    1,000 held, 64 KiB, max_inbound_per_s (38)
FIX ClOrdID length                            max_message_bytes only: fault 2
FIX SenderCompID in the limiter               digest past 64 (limits.py:27); pinned (63)
ClOrdIDs seen / finished orders               200k digests / 10,000 (clordids.py)
ResendRequests queued                         MAX_RESENDS 1,000 (gap_recovery.py:31)
mass-status reports                           open orders (<= 1,000), charged to the
                                              session's throttle (order_replies.py:127)
mass cancels waiting                          10,000 (orders.py:92)
unread output                                 MAX_UNSENT_BYTES 4 MiB (connection.py:68)
message store per session                     truncated by a reset logon, the day's end
feed connections, per address                 5,000 / a quarter; pinned (38)
feed streams per connection, per message      max_subscriptions 200, 1,024 params (38)
feed requests / pings per connection          1,000/s each (marketdata/server.py:67)
feed outbox per client                        client_queue, conflated (outbox.py); (38)
page API ``limit``, caches                    1..1000, one render per symbol/version
logs per client action                        QuietFilter on aiohttp and peers (38)
===========================================  ===============================================
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from procs.gateway.rest import RestApi
from procs.gateway.rest_client import ApiCallError
from tests.unit.gateway.harness import Harness
from tests.unit.gateway.rest_rig import LIMIT, client, fix_user, rest_exchange, run
from tests.unit.gateway.test_gateway import order

#: Logins of one user in the key tests: past ``max_keys_per_user`` (20) by five.
LOGINS = 25
#: A FIX ClOrdID far past any id the REST API takes (64), well inside ``max_message_bytes``.
LONG_ID = 7_000


@pytest.fixture
def harness(instance: str, tmp_path: Path) -> Iterator[Harness]:
    yield from rest_exchange(instance, tmp_path)


# -- sound -----------------------------------------------------------------------------------


def test_the_21st_login_evicts_the_oldest_key_and_names_it(harness: Harness) -> None:
    """Keys per user hold at ``max_keys_per_user``: each login past it revokes the oldest
    and names it in ``revokedApiKey``; the file keeps 20 of ALICE's."""

    async def scenario(api: RestApi, url: str) -> None:
        limit = api.keys.max_keys_per_user
        made: list[str] = []
        evicted: list[str] = []
        async with aiohttp.ClientSession() as http:
            for _ in range(limit + 2):
                form = {"username": "ALICE", "password": "alice-pw", "scopes": "read"}
                async with http.post(f"{url}/api/v1/apiKey", data=form) as r:
                    assert r.status == 200
                    answer = await r.json()
                made.append(answer["apiKey"])
                if "revokedApiKey" in answer:
                    evicted.append(answer["revokedApiKey"])
        assert evicted == made[:2]
        assert [k.key for k in api.keys.keys_of("ALICE")] == made[2:]

    run(harness, scenario)


def test_a_client_order_id_past_64_characters_is_refused_naming_both(harness: Harness) -> None:
    """A REST value past its limit is refused before anything keeps it, naming its length
    and the limit (-1100)."""

    async def scenario(api: RestApi, url: str) -> None:
        alice = await client(url, "ALICE", "alice-pw")
        try:
            with pytest.raises(ApiCallError) as refused:
                await alice.call(
                    "POST", "/api/v1/order", **LIMIT, price="10.00", quantity="0.10",
                    newClientOrderId="c" * 65,
                )  # fmt: skip
            assert refused.value.status == 400
            assert refused.value.body["code"] == -1100
            assert "65 characters, the limit is 64" in refused.value.body["msg"]
            assert not api.core.client_ids  # nothing kept
        finally:
            await alice.close()

    run(harness, scenario)


def test_the_address_limiter_keeps_max_keys_however_many_addresses(harness: Harness) -> None:
    """Requests from 30 distinct source addresses (127.0.0.2..31 on the loopback) with the
    address limiter shrunk to 10 keys: it keeps 10, each request served (the least recently
    seen address forgotten, never a refusal for the table's size)."""

    async def scenario(api: RestApi, url: str) -> None:
        api.ip_limits.max_keys = 10
        for k in range(2, 32):
            conn = aiohttp.TCPConnector(local_addr=(f"127.0.0.{k}", 0))
            async with (
                aiohttp.ClientSession(connector=conn) as http,
                http.get(f"{url}/api/v1/ping") as r,
            ):
                assert r.status == 200
        assert len(api.ip_limits) == 10

    run(harness, scenario)


# -- faults ----------------------------------------------------------------------------------


def test_logins_that_stream_leave_no_slot_files_of_keys_gone(harness: Harness) -> None:
    """What is wrong: ALICE logs in 25 times (each a new key, the oldest evicted past 20)
    and opens one private stream with each, closed at once. 20 keys live, yet ``streams/``
    holds a slot file of each of the 25: the files grow with every login that streams (a
    login per address every half second, from any number of addresses), never removed while
    the instance runs. A correct exchange keeps files for live keys only: an evicted or
    revoked key's slots are taken (none is held once its streams closed) and unlinked, or
    the slots are named by the account and the key's rank among its keys, not its digest."""

    async def scenario(api: RestApi, url: str) -> None:
        assert api.streams.slots is not None
        directory = api.streams.slots.directory
        for _ in range(LOGINS):
            alice = await client(url, "ALICE", "alice-pw")
            try:
                ws = await alice.stream()
                await ws.receive(timeout=2)  # its snapshot: the stream was taken
                await ws.close()
            finally:
                await alice.close()
        await asyncio.sleep(0.2)  # the last stream's end given back
        api.streams.slots.prune()  # as the streams' sweep does once a minute
        live = len(api.keys.keys_of("ALICE"))
        assert live == api.keys.max_keys_per_user
        key_files = {p.name.rsplit("-", 1)[0] for p in directory.glob("key-*.lock")}
        assert len(key_files) <= live, f"{len(key_files)} keys' slot files, {live} keys live"

    run(harness, scenario)


def test_a_fix_clordid_past_any_id_limit_is_refused_naming_its_length(harness: Harness) -> None:
    """What is wrong: a NewOrderSingle whose ClOrdID is 7,000 bytes is accepted (39=0). The
    gateway keeps it in the order's memory, the order log, every report of the order and
    the newest 10,000 finished orders (~70 MB of ids at this size, ~10 GB at
    ``max_message_bytes`` = 1 MiB), and ``openOrders`` lists it under a ``clientOrderId``
    that ``origClientOrderId`` cannot take (64 characters at most): listed, never named.
    A correct gateway refuses it (OrdRejReason 99 or a Reject) naming its length and a
    limit, the REST API's 64 (README: a ClOrdID up to 36 is filed, so 64 loses none)."""

    async def scenario(api: RestApi, url: str) -> None:
        fix = await fix_user(harness, "ALICE", "alice-pw")
        await fix.send("D", *order("x" * LONG_ID, "1", "0.10", "10.00"))
        reject = await fix.expect("3")  # a session Reject, value out of range, naming it
        assert reject.get(371) == b"11" and reject.get(373) == b"5", reject
        text = (reject.get(58) or b"").decode()
        assert str(LONG_ID) in text and "64" in text

    run(harness, scenario)
