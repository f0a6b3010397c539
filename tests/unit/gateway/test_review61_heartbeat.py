"""Review 61: a hostile reread of ae613d5 (the private stream's heartbeat, the page's 15 s
watchdog) and 0c5675f (the order button held from the click).

Pure units: ``Subscriber`` with an unstarted sender (nothing leaves its queue), the OpenAPI
document, and trading.js's ``openStream`` and watchdog run in node against a fake WebSocket
and clock. Three tests pinned a fault each (their docstrings say what should happen, what
happened, the cause and a fix): each failed on the code it was written against and passes
since its fix (the same session's commits); the other two pin what was found right.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from procs.gateway.openapi import _stream_operation
from procs.gateway.stream_subscriber import HEARTBEAT_S, Subscriber

PAGE_JS = Path(__file__).parents[3] / "procs" / "marketdata" / "static" / "trading.js"
SNAPSHOT: dict[str, Any] = {"balances": [], "openOrders": []}
USD: dict[str, Any] = {"asset": "USD", "free": "1.00", "locked": "0.00"}


def _sub(queue_limit: int = 16) -> Subscriber:
    """A stream whose sender never started: what is queued stays queued (a stalled socket)."""
    return Subscriber(web.WebSocketResponse(), "KEY", 601, queue_limit)


def test_a_heartbeat_comes_only_after_the_snapshot_and_five_idle_seconds() -> None:
    """Checked and right: none while the snapshot is made (events held then are not
    overtaken), none within ``HEARTBEAT_S`` of the last message, none on a closed stream; a
    heartbeat has no ``seq`` and does not move the events' count."""

    async def body() -> None:
        sub = _sub()
        later = time.monotonic() + HEARTBEAT_S + 1
        sub.push("balance", USD)  # held: the snapshot is being made
        sub.beat(later)
        assert not sub.queue and sub.held, "a heartbeat before the snapshot"
        sub.begin(SNAPSHOT)
        sub.beat(time.monotonic() + 1)
        assert [json.loads(m)["seq"] for m in sub.queue] == [1, 2]
        sub.queue.clear()
        sub.beat(later + 1)
        sub.beat(later + 2)  # a sweep from rest_keys a second later: no second one
        (beat,) = (json.loads(m) for m in sub.queue)
        assert beat["event"] == "heartbeat" and "seq" not in beat, beat
        sub.push("balance", USD)
        assert json.loads(sub.queue[-1])["seq"] == 3
        sub.close(b"API key revoked")
        sub.beat(later + 60)
        assert not sub.queue, "a heartbeat on a stream being closed"

    asyncio.run(body())


def test_a_heartbeat_does_not_cut_a_client_at_exactly_the_queue_limit() -> None:
    """What should happen: a client with exactly ``queue_limit`` messages not yet sent keeps
    its stream (review 44 pinned that boundary: only *more* than ``queue_limit`` cut it), and a
    heartbeat, whose one use is to tell an idle stream from a half-open one, is not queued
    behind messages the client has yet to take (they tell it the stream lives when they come).

    What happens: a stream whose socket is slow holds ``queue_limit`` unsent messages; no
    event comes for 5 s; the sweep's ``beat`` appends a heartbeat (``queued_at`` counts what
    was *queued*, not what was sent) and ``len(queue) > queue_limit`` cuts it: "slow consumer:
    17 messages not sent, the limit is 16", one of them the gateway's own heartbeat. A stalled
    idle client's queue also grows by one heartbeat every 5 s for nothing.

    Cause: ``Subscriber.beat`` (``stream_subscriber.py``) checks neither the queue nor the
    sender, and reuses ``push``'s limit check.

    Fix: ``beat`` returns when ``self.queue`` is not empty (or the sender is mid-send), and
    never calls ``_slow``: with an empty queue a heartbeat cannot take a stream past its limit.
    """

    async def body() -> None:
        sub = _sub(queue_limit=16)
        sub.begin(SNAPSHOT)
        for _ in range(15):
            sub.push("balance", USD)
        assert len(sub.queue) == 16 and not sub.cut  # exactly the limit: kept (review 44)
        sub.beat(time.monotonic() + HEARTBEAT_S + 1)
        assert not sub.cut, sub.cut.decode()
        assert len(sub.queue) == 16, "a heartbeat queued behind 16 unsent messages"

    asyncio.run(body())


def test_the_openapi_document_describes_the_heartbeat() -> None:
    """What should happen: the API's machine-readable description (``GET
    /api/v1/openapi.json``, what clients are generated from) says what the README and
    ``private_stream.py`` now say: an idle stream gets a ``heartbeat`` event without ``seq``.

    What happens: the upgrade's ``101`` description is as before ae613d5: "Messages are
    `{"event": name, "seq": n, "data": {...}}`, seq counting from 1: first a `snapshot`...,
    then `executionReport` and `balance` events". A client written to it checks ``seq`` on
    every message, as the page does, and takes the first heartbeat (5 s into any quiet
    spell) for a lost message: it reconnects every 5 s, or fails on the missing key.

    Cause: ae613d5 updated the README and the module docstrings, not
    ``procs/gateway/openapi.py``'s ``_stream_operation``.

    Fix: add to that description: "after 5 s with nothing else, a `heartbeat` event
    (`{"event": "heartbeat", "data": {"time": ms}}`, no `seq`: not one of the account's
    events)".
    """
    description = _stream_operation()["responses"]["101"]["description"]
    assert "heartbeat" in description, description


# The page's stream and watchdog, with what they call stubbed. ``stepped(ms)`` moves the
# clock and runs each timer due (the watchdog every 5 s); ``opened(ws)`` is the handshake done.
NODE_RIG = """
let clock = 1_000_000;
Date.now = () => clock;
const timers = [], sockets = [], statuses = [];
globalThis.setInterval = (f, ms) => { timers.push({f, ms, at: clock + ms}); };
globalThis.setTimeout = (f, ms) => { statuses.push(`retry ${f.name} ${ms}`); return 1; };
globalThis.clearTimeout = () => {};
globalThis.WebSocket = class {
  static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
  constructor(url) { this.url = url; this.readyState = 0; sockets.push(this); }
  close() { this.readyState = 3; this.closedAt = clock; }
};
const setStreamStatus = (s) => statuses.push(s);
const onPrivate = () => {};
const now = () => clock, signature = async () => "00";
const RECV_WINDOW_MS = 5000, STREAM_PATH = "/api/v1/stream";
let rest = "http://gw", session = {apiKey: "K"};
let stream = null, streamSeq = 0, retryTimer = null, retryDelay = 1000, streamHeard = 0;
async function reconnect() {}
FUNCTIONS
function stepped(ms) {
  for (const end = clock + ms; clock < end;) {
    clock = Math.max(clock, Math.min(end, ...timers.map((t) => t.at)));
    for (const t of timers) if (t.at <= clock) { t.at += t.ms; t.f(); }
  }
}
function opened(ws) { ws.readyState = 1; if (ws.onopen) ws.onopen({}); }
function heard(ws, msg) { ws.onmessage({data: JSON.stringify(msg)}); }
SCENARIO
"""


def _page(scenario: str) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("needs node")
    source = PAGE_JS.read_text()
    parts = [
        re.search(r"^async function openStream\(\) \{.*?^\}$", source, re.M | re.S),
        re.search(r"^setInterval\(\(\) => \{.*?^\}, 5000\);$", source, re.M | re.S),
    ]
    assert all(parts), "trading.js has no openStream or no stream watchdog"
    functions = "\n".join(p.group(0) for p in parts if p is not None)
    script = NODE_RIG.replace("FUNCTIONS", functions).replace("SCENARIO", scenario)
    ran = subprocess.run(
        [node, "--input-type=module", "-e", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert ran.returncode == 0, ran.stderr
    out: dict[str, Any] = json.loads(ran.stdout)
    return out


def test_the_watchdog_keeps_a_beating_stream_and_drops_a_silent_one() -> None:
    """Checked and right: heartbeats every 5 s keep a stream; silent for 15 s, it is closed,
    "disconnected" shown, and one reconnect scheduled (no second stream opened by the
    watchdog itself); a stream replaced or logged out (``stream`` null) is left alone."""
    out = _page("""
await openStream();
const ws = sockets[0];
opened(ws);
heard(ws, {event: "snapshot", seq: 1, data: {}});
for (let i = 0; i < 6; i++) { stepped(5000); heard(ws, {event: "heartbeat", data: {}}); }
const kept = ws.readyState;
stepped(20000);
const dropped = ws.closedAt !== undefined;
stepped(60000);
console.log(JSON.stringify({kept, dropped, sockets: sockets.length, statuses}));
""")
    assert out["kept"] == 1 and out["dropped"] is True, out
    assert out["sockets"] == 1, out
    assert out["statuses"] == ["connecting", "disconnected", "retry reconnect 0"], out


def test_a_stream_that_opened_late_is_not_dropped_before_its_snapshot() -> None:
    """What should happen: a stream is taken for half-open after 15 s *open* without a word
    (three heartbeats missed); one that has just opened has its snapshot on the way (the
    gateway's snapshot may wait ~2 s for the router and 2 s for the database).

    What happens: ``openStream`` sets ``streamHeard = Date.now()`` when it creates the
    WebSocket. On a lossy network (the very one that leaves streams half-open) the TCP
    handshake alone takes 15 s after four lost SYNs (1+2+4+8 s), more through a slow proxy;
    the stream opens at 19.5 s, and the watchdog's tick at 20 s, before the snapshot has come,
    finds ``Date.now() - streamHeard > 15000`` and ``readyState === OPEN``: it closes a stream
    0.5 s old and starts over, at the same network's mercy (each try a syncClock, a GET
    account and an upgrade charged).

    Cause: ``streamHeard`` is set in ``openStream`` (trading.js), not when the stream opens.

    Fix: ``ws.onopen = () => { if (ws === stream) streamHeard = Date.now(); };`` (the
    CONNECTING time is the browser's own handshake timeout's to bound).
    """
    out = _page("""
await openStream();
const ws = sockets[0];
stepped(19500); // SYNs lost, a slow proxy: still connecting (the watchdog leaves it)
opened(ws); // open at 19.5 s; its snapshot comes within a few seconds
stepped(1000); // the watchdog's tick at 20 s
console.log(JSON.stringify({openForMs: ws.closedAt - (1_000_000 + 19500), statuses}));
""")
    assert "disconnected" not in out["statuses"], out
