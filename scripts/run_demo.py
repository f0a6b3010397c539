"""`make run`: start the exchange (the dev profile, or PROFILE=), add demo users, print how
to connect.

Starts the supervisor (`ringex run --detach`), opens and funds two demo accounts with FIX
users (idempotent: a second run finds them), prints the FIX endpoint and credentials, the
symbols, the WebSocket and page URLs, then waits; Ctrl-C stops the exchange cleanly
(`ringex stop`), a Ctrl-C while it starts too, once the start has finished; an exchange
that stops under it (its supervisor killed, `ringex stop` elsewhere) ends it, saying so.
``--market-maker`` (`make run MM=1`) also runs ``market_maker.py`` as a child process once
the exchange is ready, so the books are quoted and trades print. It trades as two users of
its own (MM1, MM2), never as the printed ones: it cancels every open order of its account
that is off its ladder, so a user it shared an account with would see their orders vanish.
It cancels its orders before the exchange stops.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from config import load_profile
from config.loader import ConfigError
from config.schema import RingexConfig
from procs.admin.add_user import open_account
from procs.admin.client import AdminClient, to_minor_units
from procs.common.endpoints import url_host
from procs.common.result_codes import ResultCode
from procs.common.run_files import read_status, run_dir, supervisor_running
from procs.common.topology import users_path
from procs.common.users import UserStore

FUNDS = [("USD", "1000000"), ("BTC", "100"), ("ETH", "1000")]
DEMO_USERS = [  # comp id, password, account, deposits: the user's, printed
    ("DEMO1", "demo1", 101, FUNDS),
    ("DEMO2", "demo2", 102, FUNDS),
]
MARKET_MAKER_USERS = [  # the market maker's own: the quoter, then the taker
    ("MM1", "mm1", 201, FUNDS),
    ("MM2", "mm2", 202, FUNDS),
]


def ringex(*args: str) -> int:
    return subprocess.call([sys.executable, "-m", "procs.cli", *args])


def ignore_interrupts() -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C must not
        signal.signal(sig, signal.SIG_IGN)  # cut a stop


def start_exchange(profile: str) -> int:
    """`ringex run --detach`'s exit status. It runs in a session of its own, so a Ctrl-C
    meanwhile does not kill it halfway (leaving a supervisor it started coming up, unwatched):
    the Ctrl-C waits for it to finish, then raises KeyboardInterrupt for the caller's stop."""
    cmd = [sys.executable, "-m", "procs.cli", "run", "--profile", profile, "--detach"]
    starting = subprocess.Popen(cmd, start_new_session=True)
    try:
        return starting.wait()
    except KeyboardInterrupt:
        ignore_interrupts()
        print("\nCtrl-C: stopping once it has started ...", flush=True)
        starting.wait()
        raise


def add_users(
    cfg: RingexConfig, users: list[tuple[str, str, int, list[tuple[str, str]]]]
) -> dict[str, int]:
    """Open and fund each user's account and store its password (idempotent): each comp
    id's account. A user stored already keeps its own (a later run); a new one gets its
    planned account where that is new, else the next new one after every user's (``ringex
    admin add-user``'s may hold 101: the demo never deposits to another user's account)."""
    client = AdminClient(cfg)
    store = UserStore(users_path(cfg))
    accounts: dict[str, int] = {}
    try:
        for comp_id, password, planned, deposits in users:
            existing = store.get(comp_id)
            if existing is not None:
                opened: int | None = existing.account
                client.create_account(existing.account)  # OK, or ACCOUNT_EXISTS as a rule
            else:
                held = {u.account for u in store.users()}
                start = planned if planned not in held else max(held) + 1
                opened = open_account(client, cfg, start, chosen=False)
            if opened is None:  # it said why
                raise SystemExit(f"run_demo: no account for demo user {comp_id}")
            account = opened
            for k, (asset, amount) in enumerate(deposits):
                reply = client.transfer(account, asset, amount, key=account * 100 + k)
                if reply.code not in (ResultCode.OK, ResultCode.DUPLICATE_TRANSFER):
                    print(f"demo deposit refused: {reply.code.name}", file=sys.stderr)
            top_up(client, cfg, account, deposits)
            store.add(comp_id, password, account)
            accounts[comp_id] = account
    finally:
        client.close()
    return accounts


def top_up(
    client: AdminClient, cfg: RingexConfig, account: int, deposits: list[tuple[str, str]]
) -> None:
    """Deposit what ``account`` lacks of each of ``deposits`` (free and held together): a
    later ``make run`` finds the demo's funds as it prints them, not as a long run of the
    market maker left them (its first deposits' keys answer OK again, adding nothing:
    review 207). Each top-up has a key of its own, from the clock."""
    held = {b.asset: b.free + b.reserved for b in client.balances(account)}
    for asset, amount in deposits:
        asset_id, wanted = to_minor_units(cfg, asset, amount)
        short = wanted - held.get(asset_id, 0)
        if short > 0:
            decimals = next(a.decimals for a in cfg.assets if a.id == asset_id)
            shown = f"{Decimal(short).scaleb(-decimals):f}"
            reply = client.transfer(account, asset, shown, key=time.time_ns() // 1000)
            if reply.code is not ResultCode.OK:
                print(f"demo top-up refused: {reply.code.name}", file=sys.stderr)


def symbols_line(cfg: RingexConfig) -> str:
    """Each symbol with its price and size steps, as decimals (what an order must be on)."""

    def step(units: int, decimals: int) -> str:
        return f"{Decimal(units).scaleb(-decimals):f}"

    return ", ".join(
        f"{s.name} (tick {step(s.tick, s.price_decimals)}, lot {step(s.lot, s.qty_decimals)})"
        for s in cfg.symbols
    )


def start_market_maker(
    profile: str, log: Path, accounts: dict[str, int], cafile: str = ""
) -> subprocess.Popen[bytes]:
    """``cafile``: a TLS REST API's certificate (self-signed for a demo), for the bot to
    trust (review 207)."""
    script = Path(__file__).with_name("market_maker.py")
    trust = ["--cafile", cafile] if cafile else []
    (maker, maker_pw, _, _), (taker, taker_pw, _, _) = MARKET_MAKER_USERS
    maker_account, taker_account = accounts[maker], accounts[taker]
    with open(log, "ab") as out:
        bot = subprocess.Popen(
            [sys.executable, str(script), "--profile", profile,
             "--maker", f"{maker}:{maker_pw}", "--taker", f"{taker}:{taker_pw}", *trust],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    print(
        f"Market maker: {maker} (account {maker_account}) quotes, {taker} (account "
        f"{taker_account}) takes; the DEMO users are yours (pid {bot.pid}, log {log})"
    )
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


def print_endpoints(cfg: RingexConfig, accounts: dict[str, int]) -> None:
    """What a newcomer connects to: the first gateway's FIX port (TLS said), the demo users,
    the symbols, the REST API where a gateway serves one, the market data and the page."""
    gateway = cfg.gateways[0]
    served = next((g for g in cfg.gateways if g.rest is not None), None)
    print("\nringex is running. Connect a FIX 4.4 client:")
    tls = " (TLS only)" if gateway.tls_cert else ""
    print(
        f"  host {gateway.host} port {gateway.port}{tls}, TargetCompID {gateway.comp_id}, "
        "the password in Password (554) of the Logon"
    )
    for comp_id, password, _, deposits in DEMO_USERS:
        funds = ", ".join(f"{a} {m}" for a, m in deposits)
        account = accounts[comp_id]
        print(f"  SenderCompID {comp_id} password {password} (account {account}: {funds})")
    print(f"Symbols:     {symbols_line(cfg)}")
    if served is not None and served.rest is not None:
        rest = served.rest
        scheme = "https" if rest.tls_cert else "http"
        url = f"{scheme}://{url_host(rest.host)}:{rest.port}/api/v1/"
        print(f"REST API:    {url} (the same users log in:")
        print("             POST /api/v1/apiKey; document at /openapi.json)")
    if cfg.marketdata.enabled:
        md = cfg.marketdata
        stream = f"{cfg.symbols[0].name.lower()}@trade"  # the profile's, not BTC-USD's
        where = f"{url_host(md.host)}:{md.port}"
        print(f"Market data: ws://{where}/stream?streams={stream}")
        print(f"Web page:    http://{where}/")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="dev")
    parser.add_argument(
        "--market-maker", action="store_true", help="run the demo market maker (MM1, MM2)"
    )
    args = parser.parse_args()
    try:
        cfg = load_profile(args.profile)
    except ConfigError as exc:  # as every `ringex` command says it: one line, exit 2
        print(f"run_demo: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C and TERM stop it cleanly, also where it was started with SIGINT ignored (a
    # background job of a shell without job control: `make test &`, CI; Python then leaves
    # SIGINT ignored, and the demo ran on through Ctrl-C while its market maker stopped)
    # and a hangup (the terminal or ssh session closed) too: the exchange runs in a session
    # of its own and would stay behind, with its database and the market maker's orders
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    bot: subprocess.Popen[bytes] | None = None
    try:
        if start_exchange(args.profile) != 0:
            return 1  # it said why, and stopped what it started
    except KeyboardInterrupt:
        return ringex("stop", "--profile", args.profile)
    try:
        # the REST API where a gateway serves one (the market maker's ``default_url`` too)
        mm = args.market_maker and any(g.rest is not None for g in cfg.gateways)
        accounts = add_users(cfg, DEMO_USERS + (MARKET_MAKER_USERS if mm else []))
        print_endpoints(cfg, accounts)
        if args.market_maker and not mm:
            print("No market maker: it trades over the REST API, which this profile lacks")
        elif mm:
            rest = next(g.rest for g in cfg.gateways if g.rest is not None)
            log = run_dir(cfg) / "market-maker.log"
            bot = start_market_maker(args.profile, log, accounts, rest.tls_cert or "")
        print("Ctrl-C stops it.", flush=True)
        while True:
            time.sleep(1)
            if bot is not None and bot.poll() is not None:  # said once: the demo goes on
                print(f"the market maker exited ({bot.returncode}): see {log}", flush=True)
                bot = None
            if supervisor_running(read_status(cfg)) is None:  # killed, or stopped elsewhere
                print("the exchange has stopped: `ringex status` says why", flush=True)
                return 1  # (review 321: the demo said "Ctrl-C stops it" on and on)
    except KeyboardInterrupt:
        print("\nstopping ...")
    finally:
        ignore_interrupts()
        if bot is not None:  # its orders are cancelled while the exchange still runs
            stop_market_maker(bot)
        stopped = ringex("stop", "--profile", args.profile)
    return stopped


if __name__ == "__main__":
    sys.exit(main())
