"""Review 272: what an operator's monitoring reads is true: ``/metrics`` and ``ringex status``.

Reviewed: ``procs/supervisor/metrics.py`` (``RingexCollector._counted``,
``_process_metrics``), ``procs/supervisor/main.py`` (``process_samples``, ``write_status``,
``stop``), ``procs/gateway/orders.py`` and ``order_replies.py`` (what feeds the FIX counters:
``_new``, ``_duplicate``, ``_reject_new``), ``procs/cli.py`` (``_status``, ``_print_status``).

Rig: a real instance (``tests/e2e/running.py``'s ``running_exchange``: ``ringex run`` in the
foreground, router, matcher, gateway, market data where asked), FIX clients over TCP
(``tests/unit/gateway/harness.Client``), ``/metrics`` scraped over HTTP and parsed by
``prometheus_client`` (``test_metrics.scrape``), ``ringex status --json`` run as a command.

Faults found (each fixed; its test says what it was):

1. ``procs/gateway/orders.py:266-269`` with ``:231-240`` and ``order_replies.py:267-269``:
   ``_new`` counts ``orders_in`` only after ``_duplicate``; a NewOrderSingle that reuses a
   ClOrdID is rejected by ``_reject_new``, which counts it in ``rejects`` and
   ``rejects_by_reason{reason="duplicate_order"}``, never in ``orders``. The same for one
   refused while the gateway stops (``orders.py:203``, ``exchange_closed``). So
   ``ringex_fix_rejects_total`` counts orders ``ringex_fix_orders_total`` never took:
   ``acks + rejects`` exceeds ``orders`` (here 2 orders, 1 ack, 2 rejects) and a reject
   ratio passes 100 % for a client that replays its ClOrdIDs. Fixed: ``_duplicate`` and the
   closing branch count the order before its reject (a PossDup resend, unanswered, is not
   counted), so that ``orders = acks + rejects + pending`` holds.
2. ``procs/supervisor/main.py:476-488`` (``process_samples``: ``ready=c.ready``) read by
   ``metrics.py:427`` (``ringex_process_ready``): ``Child.ready`` is cleared only by
   ``_restart`` and ``_spawn``; a process that exited while the supervisor is not in its
   watch loop (a stop's drain, up to ``drain_timeout_s``; another process's restart waiting
   up to ``ready_timeout_s``) is exported ``ringex_process_up 0`` with
   ``ringex_process_ready 1``: "1 if it holds its ready ring" of a dead process. An alert on
   ``ringex_process_ready == 0`` stays quiet while the gateways are gone. ``ringex status``
   corrects the same stale flag (``cli.py``: ``ready and alive``); the metrics do not.
   Fixed: ``ready=c.ready and up`` in ``process_samples``.

Sound:

- After a known FIX flow (two resting orders, a cross filling both sides of one gateway, an
  unknown symbol), ``ringex_fix_orders_total``, ``_acks_total``, ``_fills_total``,
  ``_rejects_total``, ``rejects_by_reason{unknown_symbol}``, ``ringex_trades_total{symbol}``
  and the ack latency histogram's ``_count`` equal what was sent and answered, exactly.
- Label cardinality is bounded: no series carries a label naming an order, a ClOrdID, a
  comp id or an account; every counter family is exported with ``_total``.
- ``ringex status --json`` of the running instance lists a metrics endpoint that answers,
  and its gateway's FIX endpoint is the port the gateway listens on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from config import load_profile
from tests.e2e.running import ROOT, ringex, running_exchange
from tests.e2e.test_pipeline import place
from tests.unit.gateway.harness import Client
from tests.unit.supervisor.test_metrics import Samples, scrape, value

GW = {"gateway": "gw1"}


def metrics_url(profile: Path) -> str:
    return str(json.loads(ringex(profile, "status", "--json"))["endpoints"]["metrics"])


async def report(client: Client, ref: str, exec_type: str) -> dict[int, bytes]:
    """The next execution report for ClOrdID ``ref`` with ExecType ``exec_type``."""
    while True:
        msg = await client.expect("8", timeout=10)
        if msg.get(11) == ref.encode() and msg.get(150) == exec_type.encode():
            return {tag: msg.get(tag) for tag in (11, 39, 103, 150)}


def settled(url: str, name: str, want: float, **labels: str) -> Samples:
    """Scrape until ``name`` reaches ``want`` (the gateway stores its page once per batch)."""
    deadline = time.monotonic() + 10
    while True:
        got = scrape(url)
        if got.get((name, frozenset(labels.items())), 0.0) >= want:
            return got
        assert time.monotonic() < deadline, f"{name} did not reach {want}"
        time.sleep(0.05)


def add_users(profile: Path, *names: str) -> None:
    for name in names:
        ringex(profile, "admin", "add-user", "--username", name, "--password", "pw",
               "--deposit", "USD=100000", "--deposit", "BTC=10")  # fmt: skip


async def logged_on(port: int, name: str) -> Client:
    client = Client(name)
    await client.connect(port)
    await client.logon("pw")
    return client


# -- sound: a known flow counted exactly --------------------------------------------------------


def test_a_known_fix_flow_is_counted_exactly_with_bounded_labels(
    instance: str, tmp_path: Path
) -> None:
    with running_exchange(instance, tmp_path, database=False) as profile:
        cfg = load_profile(str(profile))
        url = metrics_url(profile)
        add_users(profile, "MM", "TK")
        port = cfg.gateways[0].port

        async def flow() -> None:
            mm, tk = await logged_on(port, "MM"), await logged_on(port, "TK")
            await place(mm, "s1", "2", "0.1", "100.00")  # sells: rest
            await report(mm, "s1", "0")
            await place(mm, "s2", "2", "0.1", "101.00")
            await report(mm, "s2", "0")
            await place(tk, "b1", "1", "0.1", "100.00")  # crosses s1: one trade, two fills
            await report(tk, "b1", "F")
            await report(mm, "s1", "F")
            await tk.send("D", (11, "x1"), (55, "NOPE-USD"), (54, "1"),
                          (60, b"20260101-00:00:00.000"), (38, "1"), (40, "2"), (44, "1"),
                          (59, "1"))  # fmt: skip
            rejected = await report(tk, "x1", "8")
            assert rejected[103] == b"1"  # unknown symbol
            await mm.aclose()
            await tk.aclose()

        asyncio.run(flow())
        got = settled(url, "ringex_fix_rejects_total", 1, **GW)
        got = settled(url, "ringex_fix_fills_total", 2, **GW)
        assert value(got, "ringex_fix_orders_total", **GW) == 4
        assert value(got, "ringex_fix_acks_total", **GW) == 3
        assert value(got, "ringex_fix_fills_total", **GW) == 2
        assert value(got, "ringex_fix_rejects_total", **GW) == 1
        assert value(got, "ringex_fix_rejects_by_reason_total", reason="unknown_symbol", **GW) == 1
        assert value(got, "ringex_fix_order_ack_latency_seconds_count", **GW) == 3
        assert value(got, "ringex_trades_total", symbol="BTC-USD") == 1
        # bounded labels: nothing names an order, a ClOrdID, a user or an account
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        allowed = {"ring", "consumer", "gateway", "matcher", "symbol", "reason", "state"}
        allowed |= {"process", "le", "ringex_instance", "profile", "ringex_supervisor_state"}
        for family in text_string_to_metric_families(text):
            if family.type == "counter":
                assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
            for s in family.samples:
                assert set(s.labels) <= allowed, (s.name, s.labels)
                assert not {"MM", "TK", "s1", "b1", "x1"} & set(s.labels.values())
        # the endpoints status lists are the ones listening
        status = json.loads(ringex(profile, "status", "--json"))
        fix = status["endpoints"]["fix gw1"]
        assert fix.startswith(f"127.0.0.1:{port} ")
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


# -- faults ----------------------------------------------------------------------------------


def test_every_rejected_new_order_is_counted_among_the_orders(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: over FIX a client sends NewOrderSingle a1 (acknowledged), a1 again (a
    reused ClOrdID, not PossDup: rejected, OrdRejReason 6) and one for an unknown symbol
    (rejected, 1): three NewOrderSingles, each answered. Expected: ``ringex_fix_orders_total``
    3 = acks 1 + rejects 2 (every reject is of an order counted). Was (fixed): orders 2, so acks +
    rejects (3) exceed the orders (2): the duplicate is a reject of no order."""
    with running_exchange(instance, tmp_path, database=False) as profile:
        cfg = load_profile(str(profile))
        url = metrics_url(profile)
        add_users(profile, "TK")

        async def flow() -> None:
            tk = await logged_on(cfg.gateways[0].port, "TK")
            await place(tk, "a1", "1", "0.1", "10.00")  # far below: rests
            await report(tk, "a1", "0")
            await place(tk, "a1", "1", "0.1", "10.00")  # the ClOrdID again
            assert (await report(tk, "a1", "8"))[103] == b"6"
            await tk.send("D", (11, "x1"), (55, "NOPE-USD"), (54, "1"),
                          (60, b"20260101-00:00:00.000"), (38, "1"), (40, "2"), (44, "1"),
                          (59, "1"))  # fmt: skip
            assert (await report(tk, "x1", "8"))[103] == b"1"
            await tk.aclose()

        asyncio.run(flow())
        got = settled(url, "ringex_fix_rejects_total", 2, **GW)
        by_reason = value(got, "ringex_fix_rejects_by_reason_total", reason="duplicate_order", **GW)
        assert by_reason == 1  # the duplicate's reject is counted
        acks = value(got, "ringex_fix_acks_total", **GW)
        rejects = value(got, "ringex_fix_rejects_total", **GW)
        assert (acks, rejects) == (1, 2)
        assert value(got, "ringex_fix_orders_total", **GW) == acks + rejects


def test_a_process_that_is_down_is_not_exported_ready(instance: str, tmp_path: Path) -> None:
    """Scenario: an instance with market data; market data is frozen (SIGSTOP) with a record
    unread, so ``ringex stop`` waits in its drain (``drain_timeout_s``) after the gateway has
    exited; ``/metrics`` is scraped meanwhile (the supervisor serves it until the rings go).
    Expected: ``ringex_process_up{process="gateway-gw1"} 0`` and
    ``ringex_process_ready{...} 0``, as ``ringex status --json`` says (``ready`` false).
    Was (fixed): ``ringex_process_ready`` 1 for the gateway that is gone, for the whole drain."""
    extra = "\n[supervisor]\ndrain_timeout_s = 8.0\n"
    with running_exchange(instance, tmp_path, extra, marketdata=True, database=False) as profile:
        cfg = load_profile(str(profile))
        url = metrics_url(profile)
        add_users(profile, "TK")
        status = json.loads(ringex(profile, "status", "--json"))
        feed = next(p["pid"] for p in status["processes"] if p["name"] == "marketdata")
        os.kill(feed, signal.SIGSTOP)
        stopper = None
        try:

            async def flow() -> None:
                tk = await logged_on(cfg.gateways[0].port, "TK")
                await place(tk, "a1", "1", "0.1", "10.00")  # an event the feed does not read
                await report(tk, "a1", "0")
                await tk.aclose()

            asyncio.run(flow())
            stopper = subprocess.Popen(
                [sys.executable, "-m", "procs.cli", "stop", "--config", str(profile)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            proc = {"process": "gateway-gw1"}
            deadline = time.monotonic() + 20
            while True:  # the gateway has exited; the supervisor drains the rings
                got = scrape(url)
                if value(got, "ringex_process_up", **proc) == 0:
                    break
                assert time.monotonic() < deadline, "the gateway did not stop"
                time.sleep(0.05)
            state = value(got, "ringex_supervisor_state", ringex_supervisor_state="stopping")
            assert state == 1
            shown = json.loads(ringex(profile, "status", "--json"))
            gateway = next(p for p in shown["processes"] if p["name"] == "gateway-gw1")
            assert (gateway["alive"], gateway["ready"]) == (False, False)  # status: right
            assert value(got, "ringex_process_ready", **proc) == 0
        finally:
            os.kill(feed, signal.SIGCONT)
            if stopper is not None:
                stopper.wait(120)
