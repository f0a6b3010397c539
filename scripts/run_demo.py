"""`make run`: start the exchange (the dev profile, or PROFILE=), add demo users, print how
to connect.

Starts the supervisor (`ringex run --detach`), opens and funds two demo accounts with FIX
users (idempotent: a second run finds them), prints the FIX endpoint and credentials, the
WebSocket and page URLs, then waits; Ctrl-C stops the exchange cleanly (`ringex stop`).
``--market-maker`` (`make run MM=1`) also runs ``market_maker.py`` as a child process once
the exchange is ready, so the books are quoted and trades print; it cancels its orders
before the exchange stops.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

from config import load_profile
from procs.admin.client import AdminClient
from procs.common.result_codes import ResultCode
from procs.common.topology import users_path
from procs.common.users import UserStore
from procs.supervisor.run_files import run_dir

DEMO_USERS = [  # comp id, password, account, deposits
    ("DEMO1", "demo1", 101, [("USD", "1000000"), ("BTC", "100"), ("ETH", "1000")]),
    ("DEMO2", "demo2", 102, [("USD", "1000000"), ("BTC", "100"), ("ETH", "1000")]),
]


def ringex(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "procs.cli", *args])


def start_market_maker(profile: str, log: Path) -> subprocess.Popen[bytes]:
    script = Path(__file__).with_name("market_maker.py")
    with open(log, "ab") as out:
        bot = subprocess.Popen(
            [sys.executable, str(script), "--profile", profile],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    print(f"Market maker: DEMO1 quotes, DEMO2 takes (pid {bot.pid}, log {log})")
    return bot


def stop_market_maker(bot: subprocess.Popen[bytes]) -> None:
    if bot.poll() is None:
        bot.terminate()  # SIGTERM: it cancels its orders and revokes its keys
    try:
        bot.wait(30)
    except subprocess.TimeoutExpired:
        print("the market maker did not stop in 30 s: killed", file=sys.stderr)
        bot.kill()
        bot.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="dev")
    parser.add_argument(
        "--market-maker", action="store_true", help="run the demo market maker (DEMO1, DEMO2)"
    )
    args = parser.parse_args()
    cfg = load_profile(args.profile)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop cleanly on TERM too
    if ringex("run", "--profile", args.profile, "--detach") != 0:
        return 1
    bot: subprocess.Popen[bytes] | None = None
    try:
        client = AdminClient(cfg)
        users = UserStore(users_path(cfg))
        try:
            for comp_id, password, account, deposits in DEMO_USERS:
                client.create_account(account)  # OK, or ACCOUNT_EXISTS on a later run
                for k, (asset, amount) in enumerate(deposits):
                    reply = client.transfer(account, asset, amount, key=account * 100 + k)
                    if reply.code not in (ResultCode.OK, ResultCode.DUPLICATE_TRANSFER):
                        print(f"demo deposit refused: {reply.code.name}", file=sys.stderr)
                users.add(comp_id, password, account)
        finally:
            client.close()
        gateway = cfg.gateways[0]
        print("\nringex is running. Connect a FIX 4.4 client:")
        print(f"  host {gateway.host} port {gateway.port}, TargetCompID {gateway.comp_id}")
        for comp_id, password, account, deposits in DEMO_USERS:
            funds = ", ".join(f"{a} {m}" for a, m in deposits)
            print(f"  SenderCompID {comp_id} password {password} (account {account}: {funds})")
        if gateway.rest is not None:
            rest = gateway.rest
            print(f"REST API:    http://{rest.host}:{rest.port}/api/v1/ (the same users log in:")
            print("             POST /api/v1/apiKey; document at /openapi.json)")
        if cfg.marketdata.enabled:
            md = cfg.marketdata
            print(f"Market data: ws://{md.host}:{md.port}/stream?streams=btc-usd@trade")
            print(f"Web page:    http://{md.host}:{md.port}/")
        if args.market_maker and gateway.rest is None:
            print("No market maker: it trades over the REST API, which this profile lacks")
        elif args.market_maker:
            bot = start_market_maker(args.profile, run_dir(cfg) / "market-maker.log")
        print("Ctrl-C stops it.")
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the stop
            signal.signal(sig, signal.SIG_IGN)
        if bot is not None:  # its orders are cancelled while the exchange still runs
            stop_market_maker(bot)
        ringex("stop", "--profile", args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
