"""Review 106, the private stream: its messages, heartbeats, limits, refusals and closes are as
README.md's "### The REST API and the private stream" says (``Subscriber``,
``PrivateStreams._admit``, and the scenario's stream); the keys file and the logins past a
user's keys. Shared rig: ``readme_rest_claims.py``.
"""

from __future__ import annotations

import inspect
import json
import re
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlencode

import msgspec
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from config.edges import RestConfig
from procs.common.apikeys import SCOPES
from procs.common.topology import gateway_root
from procs.gateway import rest_keys, signing, stream_subscriber
from procs.gateway.api_errors import ApiError
from procs.gateway.private_stream import PATH as STREAM_PATH
from procs.gateway.private_stream import _too_many
from procs.gateway.rest import RestApi
from procs.gateway.stream_subscriber import CLOSE_GRACE_S, HEARTBEAT_S, Subscriber
from tests.unit.gateway import readme_rest_claims as claims
from tests.unit.gateway.readme_rest_claims import (
    DOC,
    ROOT,
    SECTION,
    _claim,
    _fits,
    _folded,
    _refused,
    _run,
    _schema_keys,
)
from tests.unit.gateway.test_review126_rest_docstrings2 import HANDSHAKE

local = claims.local  # the fixture: a RestApi made, never started
served = claims.served  # the fixture: the scenario's observations, run once for this module


# -- 5. the private stream --------------------------------------------------------------------


def test_the_streams_messages_are_a_snapshot_then_reports_and_balances_each_with_seq(
    served: dict[str, Any],
) -> None:
    """README: "it sends a `snapshot` (balances, open orders ...), then `executionReport` and
    `balance` events, each with `seq`" (stream_subscriber.py:96 ``begin``, :110 ``push``);
    the document's 101 says so too (``{"event", "seq", "data"}``, seq from 1)."""
    _claim(
        "it sends a `snapshot` (balances, open orders, including those the user placed over "
        "FIX on this gateway"
    )
    _claim("then `executionReport` and `balance` events, each with `seq`")
    messages = served["stream"]
    assert messages[0]["event"] == "snapshot" and messages[0]["seq"] == 1
    assert set(messages[0]["data"]) == {"balances", "openOrders"}
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert {m["event"] for m in messages[1:]} == {"executionReport", "balance"}
    assert all(set(m) == {"event", "seq", "data"} for m in messages)
    for m in messages:
        if m["event"] == "balance":
            _fits(m["data"], {"$ref": "#/components/schemas/Balance"})
    described = DOC["paths"][STREAM_PATH]["get"]["responses"]["101"]["description"]
    assert '`{"event": name, "seq": n, "data": {...}}`, seq from 1' in described


def test_an_execution_report_is_the_order_with_what_happened(served: dict[str, Any]) -> None:
    """rest_order_state.py:143 ``report_json``: the order's view, ``executionType``,
    ``eventTime``, and a fill's ``lastQty``, ``lastPrice``, ``tradeId``, ``isMaker``,
    ``commission``, ``commissionAsset`` (the document's 101: "as a `Fill` does"); the
    README's kinds are among those seen: NEW, REPLACED (an amend), TRADE, TRADE_PREVENTION,
    CANCELED, REJECTED."""
    _claim("the private stream says `REPLACED`")
    _claim("comes as a `TRADE` on the stream")
    _claim("its NEW or REJECTED report follows")
    _, order = _schema_keys({"$ref": "#/components/schemas/Order"})
    fill = {"lastQty", "lastPrice", "tradeId", "isMaker", "commission", "commissionAsset"}
    described = DOC["paths"][STREAM_PATH]["get"]["responses"]["101"]["description"]
    assert all(f"`{k}`" in described for k in fill)
    kinds = set()
    for report in served["events"]:
        kinds.add(report["executionType"])
        extra = set(report) - order - {"executionType", "eventTime", "rejectReason"}
        assert extra == (fill if report["executionType"] == "TRADE" else set()), report
    assert {"NEW", "REPLACED", "TRADE", "TRADE_PREVENTION", "CANCELED", "REJECTED"} <= kinds


def test_an_idle_stream_gets_a_heartbeat_without_seq_after_five_seconds() -> None:
    """README: "after 5 s with nothing else, a `heartbeat` event (`{"event": "heartbeat",
    "data": {"time": ms}}`, no `seq`: not one of the account's events)" (stream_subscriber.py
    :34 ``HEARTBEAT_S``, :126 ``beat``); the page replaces a stream silent for 15 s
    (trading.js)."""
    _claim(
        'after 5 s with nothing else, a `heartbeat` event (`{"event": "heartbeat", "data": '
        '{"time": ms}}`, no `seq`: not one of the account\'s events)'
    )
    _claim("(the page replaces a stream silent for 15 s)")
    assert HEARTBEAT_S == 5.0
    page = (ROOT / "procs" / "marketdata" / "static" / "trading.js").read_text()
    assert "Date.now() - streamHeard > 15000" in page

    async def beats() -> list[dict[str, Any]]:
        sub = Subscriber(cast(web.WebSocketResponse, None), "key", 601, 16)
        sub.begin({"balances": [], "openOrders": []})
        sub.push("balance", {"asset": "USD", "free": "1", "locked": "0"})
        sent = [json.loads(m) for m in sub.queue]
        sub.queue.clear()  # sent
        sub.beat(sub.queued_at + HEARTBEAT_S - 0.01)  # not yet
        assert not sub.queue
        before = time.time_ns() // 1_000_000
        sub.beat(sub.queued_at + HEARTBEAT_S)
        beat = json.loads(sub.queue.popleft())
        assert before <= beat["data"]["time"] <= time.time_ns() // 1_000_000
        sub.push("balance", {"asset": "USD", "free": "2", "locked": "0"})  # seq goes on
        sub.finish()
        return [*sent, beat, json.loads(sub.queue.popleft())]

    snapshot, balance, beat, after = _run(beats())
    assert (snapshot["seq"], balance["seq"], after["seq"]) == (1, 2, 3)
    assert set(beat) == {"event", "data"} and beat["event"] == "heartbeat"
    assert set(beat["data"]) == {"time"}


_signed_at = [0]


def _stream_query(key: Any, **extra: str) -> str:
    """A stream URL's signed query, each at a later millisecond (the same twice: a replay)."""
    now = _signed_at[0] = max(time.time_ns() // 1_000_000, _signed_at[0] + 1)
    sig = signing.sign(key.secret, now, 5_000, "GET", STREAM_PATH, "", b"")
    return urlencode(
        {"apiKey": key.key, "timestamp": now, "recvWindow": 5_000, "signature": sig, **extra}
    )


def test_stream_limits_per_key_per_account_per_gateway_and_while_stopping(
    local: RestApi,
) -> None:
    """README: "a gateway that stops takes no new stream (`503`). One key holds at most
    `max_streams_per_key` streams (5; then `429`) and one account over all its keys
    `max_streams_per_account` (10), across the instance's gateways (each stream holds a slot
    of both, a lock file under `var/<instance>/gateway/streams/` ...), and a gateway at most
    `max_streams` of its own" (private_stream.py:200 ``_admit``, stream_slots.py; edges.py
    :40-41); the README's example refusal is the code's, word for word."""
    _claim(
        "a gateway that stops takes no new stream (`503`). One key holds at most "
        "`max_streams_per_key` streams (5; then `429`) and one account over all its keys "
        "`max_streams_per_account` (10), across the instance's gateways (each stream holds "
        "a slot of both, a lock file under `var/<instance>/gateway/streams/`"
    )
    _claim("and a gateway at most `max_streams` of its own")
    _claim(
        "the reason `<code> <msg>` (`-1003 this account (all its keys) holds 10 private "
        "streams, the limit is 10`)"
    )
    assert (RestConfig().max_streams_per_key, RestConfig().max_streams_per_account) == (5, 10)
    example = _too_many("this account (all its keys)", 10, 10)
    assert f"{example.code} {example.msg}" == (
        "-1003 this account (all its keys) holds 10 private streams, the limit is 10"
    )
    streams = local.streams
    user = local.logins.get("ALICE")
    assert user is not None
    key = local.keys.create(user, ["read", "trade"], "", evict_oldest=True)

    def admit(**extra: str) -> ApiError:
        request = make_mocked_request(
            "GET", f"{STREAM_PATH}?{_stream_query(key, **extra)}", headers=HANDSHAKE
        )
        return _refused(lambda: streams._admit(request))

    class Sub:
        def __init__(self, key: str) -> None:
            self.key = key

    try:
        streams.closing = True
        stopping = admit()
        assert (stopping.status, stopping.code) == (503, -1001) and "stopping" in stopping.msg
        streams.closing = False
        streams.count = streams.max_streams
        full = admit()
        assert (full.status, full.code) == (503, -1001), full.msg
        assert f"{streams.max_streams} private streams" in full.msg
        streams.count = 0
        streams.by_account[601] = cast(set[Subscriber], {Sub(key.key)})
        per_key = admit()
        assert (per_key.status, per_key.code) == (429, -1003) and "this API key" in per_key.msg
        others = {Sub(f"other{i}") for i in range(streams.max_per_account)}
        streams.by_account[601] = cast(set[Subscriber], others)
        per_account = admit()
        assert per_account.status == 429 and "this account (all its keys)" in per_account.msg
        assert per_account.retry_after_s is not None
    finally:
        streams.by_account.clear()
        streams.count = 0
        streams.closing = False
    assert streams.slots is not None
    assert streams.slots.directory == gateway_root(local.cfg) / "streams"
    assert gateway_root(local.cfg) == Path(local.cfg.var_dir) / local.cfg.instance / "gateway"


def test_a_closing_stream_is_dropped_ten_seconds_after_its_close_frame() -> None:
    """README: "a client that takes nothing ... is dropped 10 s after its close frame was
    queued (`CLOSE_GRACE_S` in `procs/gateway/stream_subscriber.py`, not a config key)"."""
    _claim(
        "dropped 10 s after its close frame was queued (`CLOSE_GRACE_S` in "
        "`procs/gateway/stream_subscriber.py`, not a config key)"
    )
    assert CLOSE_GRACE_S == stream_subscriber.CLOSE_GRACE_S == 10.0
    assert not any("grace" in f.name for f in msgspec.structs.fields(RestConfig))


def test_refusals_told_as_closes_and_revoked_keys_close_with_1008(served: dict[str, Any]) -> None:
    """README: "with `closeOnRefusal=true` in the URL (not signed) the gateway takes the
    upgrade and closes it at once instead, code 1008 for the credentials, 1013 for a limit,
    the reason `<code> <msg>`" (private_stream.py:86 ``refuse_in_band``); "`DELETE
    /api/v1/apiKey` revokes the key that signs it, and closes the private streams it opened
    (1008" (rest_keys.py:73, private_stream.py:138 ``sweep``)."""
    _claim(
        "with `closeOnRefusal=true` in the URL (not signed) the gateway takes the upgrade "
        "and closes it at once instead, code 1008 for the credentials, 1013 for a limit, the "
        "reason `<code> <msg>`"
    )
    _claim(
        "`DELETE /api/v1/apiKey` revokes the key that signs it, and closes the private "
        "streams it opened (1008;"
    )
    code, reason = served["close_limit"]
    assert code == 1013 and reason.startswith("-1003 this API key"), reason
    code, reason = served["close_credentials"]
    assert code == 1008 and reason.startswith(f"{signing.BAD_SIGNATURE} signature does not match")
    assert served["revoke"][1] == {"apiKey": served["bob_key"], "revoked": True}
    assert served["revoked_stream_close"] == 1008


def test_every_status_an_upgrade_is_refused_with_is_the_readmes(served: dict[str, Any]) -> None:
    """README: "An upgrade refused (`401`, `403`, `429`, `503`) is that HTTP error": the 400
    of a parameter the stream does not take is one such refusal too."""
    status, body = served["probe"][("GET", STREAM_PATH)]
    assert (status, body["code"]) == (400, -1104)
    listed = re.search(r"An upgrade refused \(([^)]*)\)", _folded(SECTION))
    assert listed is not None and "`400`" in listed[1], listed


def test_keys_file_and_stream_locks_are_where_the_readme_says(served: dict[str, Any]) -> None:
    """README: "Keys live in `var/<instance>/gateway/apikeys.json` (mode 0600)" (topology.py
    ``apikeys_path``); a stream holds "a lock file under `var/<instance>/gateway/streams/`"
    (stream_slots.py): both seen after the scenario's logins and streams."""
    _claim("Keys live in `var/<instance>/gateway/apikeys.json` (mode 0600)")
    keys, mode, locks = served["keys_file"], served["keys_mode"], served["stream_locks"]
    assert keys.parts[-3:] == (served["instance"], "gateway", "apikeys.json")
    assert mode == 0o600
    assert locks, "no lock file under var/<instance>/gateway/streams/"


def test_a_login_past_the_users_keys_revokes_its_oldest_and_names_it(
    served: dict[str, Any],
) -> None:
    """README: "A user holds at most `max_keys_per_user` keys (20): a login beyond that
    revokes the user's oldest key and names it (`revokedApiKey`)" (rest_keys.py:65;
    edges.py:32); here ``max_keys_per_user`` is 3: CAROL's fourth login names her first key,
    which no longer signs."""
    _claim(
        "A user holds at most `max_keys_per_user` keys (20): a login beyond that revokes the "
        "user's oldest key and names it (`revokedApiKey`)"
    )
    assert RestConfig().max_keys_per_user == 20
    assert served["login_evicting"][1]["revokedApiKey"] == served["carol_first_key"]
    assert (served["evicted_signs"][0], served["evicted_signs"][1]["code"]) == (401, -2014)
    assert "revokedApiKey" not in served["login"][1]
    assert set(SCOPES) == {"read", "trade"}
    assert 'params.get("scopes", "read,trade")' in inspect.getsource(rest_keys)
