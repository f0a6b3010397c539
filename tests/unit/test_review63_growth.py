"""A hostile review (63) of memory that grows without a bound over a long-running venue: the
soak target says no process's RSS grows more than 5% over 10 minutes at 10k orders/s, and a
process that runs for months must keep no per-request, per-order, per-connection, per-key,
per-address or per-account state for ever, nor take a size from a client without a limit.

Reviewed: the gateway's FIX side (``connections.py``'s password checks and their
``failed_logins`` limiter, ``session.py``, ``store.py``'s sparse index, ``audit.py``'s
prefixes, ``live_sessions.py``, ``orders.py`` and ``order_memory.py``: ``finished`` and the
``seen`` ClOrdID generations, ``sent_commands.py``' sweeps, ``deadlines.py``), its REST
side (``limits.py``' buckets per key, address and username, ``signing.py``'s replay memory,
``fast_request.py``'s header sets, ``rest_orders.py`` with ``rest_interest.py``,
``rest_balances.py``, ``rest_catch_up.py``, ``recent_elsewhere.py``, ``rest_order_log.py``,
``private_stream.py``); the router and its core (``router/main.py``'s owed and pending
replies, ``reread.py``, ``core/recovery.py``'s ``JournaledTail``, ``core/sequencer.py``'s
client ids and rate buckets, ``core/accounts.py``, ``core/watches.py``); the matcher's books;
market data (``marketdata/web.py``'s rendered caches, ``hub.py``, ``server.py``'s count per
address, ``core/market`` candles and ticker); the writer's ``projection.py`` and ``store.py``;
the supervisor's ``carried.py`` and metrics label sets.

What holds (the passing tests pin some of it): every rate limiter keeps at most ``max_keys``
keys (least recently seen forgotten); the signature replay memory holds only signatures still
inside their window, at most ``replay_capacity``; the header-set cache stops at 256; the FIX
ClOrdID memory is two rotating generations, finished orders the newest 10,000, the store's
index 16 bytes per 256 messages; ``JournaledTail`` keeps a ring's capacity per gateway;
the sequencer drops a client id with its order's end; the REST core drops an account's
interest, balances, watch and read-your-writes marks when its interest ends, keeps
``keep_done`` finished orders, ``UNFOLLOWED_KEPT`` events per account and
``RECENT_EVENTS`` in all; the feed's rendered trades and candles are cut to twice what
their source holds, its per-address counts go with the last connection, its streams are
the configured symbols'; watches lapse with their leases; the writer's projection drops a
finished order; metrics labels are the configured gateways, rings, roles and symbols.

Faults, each pinned by a test that failed on the code it was written against for the fault
it names (its docstring says what is wrong and what a correct exchange does) and passes
since its fix (the same session's commits; the third's test now gives each deposit its
time, which the fix reads: a key is in use for a week after its transfer):

1. The wrong-password limiter (``RateLimiter`` at ``failed_logins``, limits.py:40) is keyed
   by the FIX Logon's SenderCompID exactly as sent (connections.py:123), before anything says
   that user exists, and SenderCompID has no length limit short of ``max_message_bytes``
   (8 KiB): a connect, Logon, close from anyone spends no scrypt (the check is skipped for a
   closed connection) and leaves an ~8 KB key. ``max_keys`` (100,000) bounds the count, not
   the bytes: ~800 MB in the gateway.
2. ``RestOrders.sessions`` (rest_orders.py:106, set at rest_interest.py:50) is the one
   per-account table ``_forget_account`` leaves behind when an account's interest ends:
   every account that ever used the API stays in every gateway for the process's life.
3. ``Accounts._keys`` (accounts.py:118), the transfers' idempotency keys, is never trimmed:
   every deposit and withdrawal ever made is held (~250 bytes) in the router, the standby
   and the writer's follower, and written into every exchange snapshot (``transfer_keys``).
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from aiohttp import web

from procs.common.records import CancelOrder, Record
from procs.core.accounts import Accounts
from procs.core.recovery import JournaledTail
from procs.gateway import fast_request
from procs.gateway.instruments import Instruments
from procs.gateway.limits import RateLimiter
from procs.gateway.rest_orders import RestOrders
from procs.gateway.signing import Verifier, sign
from tests.unit.gateway.harness import USD, Client, Harness, config, run_scenario, settled

N_ACCOUNTS = 20_000


def _rest_core() -> RestOrders:
    cfg = config("unused", Path("/nonexistent"))
    out: list[Record] = []
    refs = itertools.count(100)
    return RestOrders(1, Instruments(cfg.symbols), cfg.assets, out, lambda: next(refs))


# -- what holds ---------------------------------------------------------------------------------


def test_a_rate_limiter_keeps_at_most_max_keys() -> None:
    """20,000 addresses (or keys, or usernames) through a limiter of 1,000: 1,000 kept."""
    limits = RateLimiter(10.0, 5, max_keys=1_000)
    for i in range(N_ACCOUNTS):
        limits.take(f"10.0.{i // 256}.{i % 256}", float(i) / 1000)
    assert len(limits) == 1_000


def test_the_replay_memory_forgets_signatures_past_their_window() -> None:
    """20,000 signed requests over 20 s, each with a 1 s window: those of the last second or
    so are remembered, not all 20,000."""
    v = Verifier(60_000, 1_000)
    start = 1_700_000_000_000
    for i in range(N_ACCOUNTS):
        now = start + i  # 1,000 a second
        sig = sign("secret", now, 1_000, "GET", "/api/v1/account", f"n={i}", b"")
        v.verify("secret", str(now), "1000", sig, "GET", "/api/v1/account", f"n={i}", b"", now)
    assert len(v) < 5_000, len(v)


def test_the_header_set_cache_stops_at_its_limit() -> None:
    """Answers with 2,000 distinct Retry-After headers leave at most ``MAX_HEADER_SETS``."""
    for i in range(2_000):
        answer = web.Response(body=b"{}", headers={"Retry-After": str(i)})
        fast_request.response_bytes(answer, keep_alive=True)
    assert len(fast_request._header_lines) <= fast_request.MAX_HEADER_SETS


def test_the_journaled_tail_keeps_a_ring_per_gateway() -> None:
    tail = JournaledTail(per_gateway=64, gateways=2)
    for i in range(N_ACCOUNTS):
        tail.add(CancelOrder(i + 1, 0, 1, 1, i + 1, 7, 1, 5))
    assert sum(len(k) for k in tail.by_gateway().values()) == 64


def test_the_rest_core_forgets_an_accounts_state_with_its_interest() -> None:
    """20,000 accounts use the API once; their interest lapses: interest, watch renewals,
    balances and read-your-writes marks go with it."""
    core = _rest_core()
    for account in range(1, N_ACCOUNTS + 1):
        core.touch(account, account, 0.0)
    core.tick(core.interest_s + 1)
    assert not core.interest and not core._watched and not core.balances
    assert not core._need and not core._have


# -- faults ---------------------------------------------------------------------------------------


def test_logons_with_long_sender_comp_ids_cost_bounded_memory(
    instance: str, tmp_path: Path
) -> None:
    """Anyone who can reach the FIX port connects, sends a Logon whose SenderCompID is 6,000
    characters (a String field: no limit short of the 8 KiB message), and closes. The Logon
    passes the checks before the password (TargetCompID, SendingTime, the dictionary);
    ``connections._verify`` then spends a token of ``failed_logins`` keyed by that
    SenderCompID as sent (connections.py:123), creating a bucket; the scrypt is skipped, the
    connection being gone. Each such try leaves ~6 KB in the gateway, up to ``max_keys``
    (100,000) of them: ~600-800 MB, made in a minute or two of connect/close, and held
    while the flood goes on (each new one pushes the oldest out).

    Expected (a correct exchange): what a limiter keeps per key is bounded in bytes, not only
    in count: key by a SenderCompID no longer than any user's (or a digest of it), or count
    unknown names under one key. Measured: under 512 bytes of key per try. Today: ~6 KB."""
    h = Harness(config(instance, tmp_path))
    h.add_user("ALICE", "secret", 7)
    tries = 150

    async def scenario(harness: Harness, port: int) -> None:
        gw = harness.gateway
        assert gw is not None
        limits = gw.failed_logins
        for i in range(tries):  # each long one beside a short unknown name, a user's size
            for comp_id in (f"{i:06d}" + "X" * 6_000, f"U{i:06d}"):
                c = Client(comp_id)
                await c.connect(port)
                await c.send("A", (98, 0), (108, 30), (554, "guess"))
                await c.aclose()
        await settled(lambda: len(limits) >= tries, 10.0)
        assert len(limits) >= tries, len(limits)  # the tries were taken, the short ones kept
        held = sum(sys.getsizeof(k) for k in limits._buckets)
        assert held <= tries * 512, f"{held} bytes of keys for {tries} tries"

    run_scenario(h, scenario, limit_s=30.0)


def test_an_accounts_session_is_forgotten_with_its_interest() -> None:
    """``_forget_account`` (rest_interest.py:76) drops the account's interest, watch,
    balances, rows, kept events and read-your-writes marks, but not ``sessions[account]``
    (set by every ``touch``, rest_interest.py:50; read only to stamp a WatchBalances).
    20,000 accounts that used the API once, a lapsed interest each: 20,000 entries stay,
    for the gateway's life (every account a venue ever had that touched the API).

    Expected: nothing per account left once its interest ends (pop it after the
    ``_watch(account, 0)`` that needs it). Today: all 20,000 kept."""
    core = _rest_core()
    for account in range(1, N_ACCOUNTS + 1):
        core.touch(account, account, 0.0)
    core.tick(core.interest_s + 1)
    assert not core.interest
    assert len(core.sessions) == 0, len(core.sessions)


def test_transfer_keys_are_kept_for_a_window_not_for_ever(tmp_path: Path) -> None:
    """Every ``Transfer`` applied puts its key in ``Accounts._keys`` (accounts.py:169) with
    (account, asset, amount, seq): nothing ever removes one, and ``state()`` writes all of
    them into every exchange snapshot (``transfer_keys``). The router, the standby and the
    writer's follower each hold every deposit and withdrawal the venue ever made, ~250 bytes
    apiece: a venue of 100k transfers a day adds ~25 MB a day to each, and to each snapshot
    (and the time to write and load one), without end.

    Expected: an idempotency key is kept for a retry window (a day, or the newest N keys,
    the window the admin client's retry needs), then forgotten; a key older than that is
    refused as too old or simply applied. Here: 20,000 deposits; the memory and the
    snapshot's list should not hold all 20,000. Today: they do."""
    cfg = config("unused", tmp_path)
    accounts = Accounts(cfg)
    assert accounts.create_account(7).name == "OK"
    step = 20 * 86_400 * 10**9 // N_ACCOUNTS  # the deposits spread over 20 days
    for key in range(1, N_ACCOUNTS + 1):
        assert accounts.transfer(7, USD, 1, key, seq=key, ts_ns=key * step).name == "OK"
    assert len(accounts.state().transfer_keys) < N_ACCOUNTS, len(accounts._keys)
