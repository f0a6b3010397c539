"""`ringex admin`: its subcommands' arguments, their checks, and what they print.

Account commands (create-account, deposit, withdraw, add-user) and the symbol commands
(halt, resume, end-session, snapshot) act on the running exchange through its admin gateway
(``client.py``); ``balances`` reads an account's balances from the router, and
``cancel-all`` cancels an account's open orders (or, with ``--every-account``, every open
order on a symbol): an operator's kill switch, one ``MassCancel`` through the router.
``users``, ``remove-user``, ``set-password`` and ``set-user`` work on the users file
(``users.py``), ``keys`` and ``revoke-key`` on the API keys file (``keys.py``).
Arguments are checked before anything is attached, so a typo is not an instance that is down.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from typing import Final

from config.refused_value import cut_values
from config.schema import RingexConfig
from procs.admin.add_user import add_user, fee_account_taken
from procs.admin.args import Once, ascii_int, named
from procs.admin.client import (
    MAX_UNITS,
    AdminClient,
    AdminError,
    check_account,
    symbol_id_of,
    to_minor_units,
)
from procs.admin.keys import list_keys, revoke_key
from procs.admin.users import (
    list_users,
    on_off,
    remove_user,
    seconds_or_gateway,
    set_password,
    set_user,
)
from procs.common.records import AccountReply, Balance
from procs.common.result_codes import ResultCode
from procs.common.run_files import read_status
from procs.common.topology import snapshot_dir
from shm.errors import ShmError, ShmPermissionError


def standby_refusal(cfg: RingexConfig) -> str:
    """The refusal of an admin command to ``cfg``'s instance while it runs as a standby, ""
    when it does not: its rings exist, but no router reads them until it is promoted
    (review 50: a halt sent there said "sent" and was lost), and its users and API key
    files are its primary's, shipped (an edit there broke the shipping, and was lost or
    kept into its promotion: a review, 2026-12-03)."""
    status = read_status(cfg)
    if status is not None and status.get("role") == "standby" and status.get("state") != "stopped":
        return (
            f"ringex admin: instance {cfg.instance} is a standby: it takes no admin command "
            "until it is promoted; send it to the primary"
        )
    return ""


def admin_client(cfg: RingexConfig) -> AdminClient | None:
    """The admin rings of the running instance, or None with a message when it is not, or
    when it is a standby (``standby_refusal``)."""
    if refused := standby_refusal(cfg):
        print(refused, file=sys.stderr)
        return None
    try:
        return AdminClient(cfg)
    except ShmPermissionError as exc:  # another user's instance (review 155: a traceback)
        print(f"ringex admin: {exc}", file=sys.stderr)
        return None
    except ShmError as exc:
        print(f"ringex admin: instance {cfg.instance} is not running ({exc})", file=sys.stderr)
        return None
    except AdminError as exc:  # another admin command's turn did not end in time
        print(f"ringex admin: {exc}", file=sys.stderr)
        return None


def _signed(amount: str) -> bool:
    """An amount with a minus, or a sign after its one optional "+" ("+-5" is -5 to Decimal):
    a deposit or withdrawal says which way, its amount never does."""
    text = amount.strip()
    return text.startswith("-") or text.removeprefix("+").lstrip().startswith(("-", "+"))


def _admin_args_refused(cfg: RingexConfig, args: argparse.Namespace) -> tuple[str, int]:
    """Why the arguments of ``args.admin_command`` cannot make a command, and the exit
    status ("", 0 when they can), checked before anything is attached: a typo is not an
    instance that is down. 2 for a symbol not configured, the fee account, a signed amount
    (usage); 1 for a value the records cannot carry (what it has always been)."""
    command = args.admin_command
    if command == "create-account" and args.account == cfg.risk.fee_account:
        return fee_account_taken(cfg, "create-account"), 2
    if command in ("deposit", "withdraw") and _signed(args.amount):
        return (f"ringex admin {command}: amount {args.amount} must be positive "
                "(deposit and withdraw say which way)", 2)  # fmt: skip
    try:
        symbolic = ("halt", "resume", "end-session", "snapshot", "cancel-all")
        if command in symbolic and args.symbol is not None:  # "" is an unknown symbol too
            symbol_id_of(cfg, args.symbol)
    except AdminError as exc:
        return f"ringex admin {command}: {exc}", 2
    try:
        if command in ("create-account", "deposit", "withdraw", "balances") or (
            command == "cancel-all" and not args.every_account
        ):
            check_account(args.account)
        if command in ("deposit", "withdraw"):
            to_minor_units(cfg, args.asset, args.amount.strip().removeprefix("+"))
            if args.key is not None and not 0 < args.key <= MAX_UNITS:
                raise AdminError(f"idempotency key {args.key} is outside 1..{MAX_UNITS}")
    except AdminError as exc:
        return f"ringex admin {command}: {exc}", 1
    except KeyError as exc:  # an asset not configured: its message, not its repr
        return f"ringex admin {command}: {exc.args[0]}", 1
    return "", 0


#: The commands that change the users or API key file without the router
_FILE_EDITS: Final = frozenset(("set-password", "set-user", "remove-user", "revoke-key"))


def run_admin(args: argparse.Namespace, cfg: RingexConfig) -> int:
    """`ringex admin <command>` against ``cfg``'s instance; the exit status."""
    if args.admin_command in _FILE_EDITS and (refused := standby_refusal(cfg)):
        print(refused, file=sys.stderr)  # (add-user's is its admin client's)
        return 1
    if args.admin_command in ("add-user", "set-password"):
        if args.password_stdin:  # not on argv, where `ps` shows it to every user
            try:
                args.password = sys.stdin.readline().rstrip("\r\n")
            except UnicodeDecodeError as exc:
                print(f"ringex admin {args.admin_command}: the password on stdin is not UTF-8 "
                      f"text (byte 0x{exc.object[exc.start]:02x})", file=sys.stderr)  # fmt: skip
                return 2
            if not args.password:
                print(f"ringex admin {args.admin_command}: no password on stdin", file=sys.stderr)
                return 2
        if args.admin_command == "set-password":
            return set_password(cfg, args)
        return add_user(cfg, args, lambda: admin_client(cfg))
    if args.admin_command == "set-user":
        return set_user(cfg, args)
    if args.admin_command == "keys":
        return list_keys(cfg, args)
    if args.admin_command == "revoke-key":
        return revoke_key(cfg, args)
    if args.admin_command == "users":
        return list_users(cfg, args.json)
    if args.admin_command == "remove-user":
        return remove_user(cfg, args, lambda: admin_client(cfg))
    refused, code = _admin_args_refused(cfg, args)
    if refused:
        print(refused, file=sys.stderr)
        return code
    client = admin_client(cfg)
    if client is None:
        return 1
    try:
        if args.admin_command in ("halt", "resume"):
            client.halt(args.symbol, resume=args.admin_command == "resume")
            print(f"{args.admin_command} {args.symbol}: sent")
            return 0
        if args.admin_command == "end-session":
            client.end_session(args.symbol)
            print(f"end-session {args.symbol or 'every symbol'}: sent (DAY orders expire)")
            return 0
        if args.admin_command == "snapshot":
            client.snapshot(args.symbol)
            whose = f"the matcher of {args.symbol}" if args.symbol else "every matcher"
            print(f"snapshot: sent ({whose} writes one, {snapshot_dir(cfg, '*')})")
            return 0
        if args.admin_command == "balances":
            return _print_balances(cfg, args.account, client.balances(args.account), args.json)
        if args.admin_command == "cancel-all":
            account = 0 if args.every_account else args.account
            client.cancel_all(account, args.symbol)
            whose = "every account" if args.every_account else f"account {account}"
            print(f"cancel-all {whose}, {args.symbol or 'every symbol'}: done (orders end)")
            return 0
        replies, held = _send(client, cfg, args)
    except (AdminError, KeyError) as exc:
        print(f"ringex admin: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return _print_replies(cfg, args, replies, held)


def _send(
    client: AdminClient, cfg: RingexConfig, args: argparse.Namespace
) -> tuple[list[AccountReply], int]:
    """A create-account's or transfer's replies, and what open orders hold of the asset where
    a withdrawal is short of it (its refusal names both: review 313)."""
    if args.admin_command == "create-account":
        return [client.create_account(args.account)], 0
    # "+ 10" is 10 to both (review 45: a withdrawal sent "- 10", a deposit " 10")
    amount = args.amount.strip().removeprefix("+").strip()
    sign = "-" if args.admin_command == "withdraw" else ""
    reply = client.transfer(args.account, args.asset, sign + amount, args.key)
    if reply.code != ResultCode.INSUFFICIENT_BALANCE:
        return [reply], 0
    asset = cfg.asset(args.asset).id
    return [reply], sum(b.reserved for b in client.balances(args.account) if b.asset == asset)


def _print_replies(
    cfg: RingexConfig, args: argparse.Namespace, replies: list[AccountReply], held: int
) -> int:
    """A create-account's or transfer's replies, one line each; 1 where one was refused."""
    code = 0
    for reply in replies:
        ok = reply.code == ResultCode.OK
        code = code or (0 if ok else 1)
        if not ok:  # on stderr, naming what was asked and the limit that refused it (review
            # 155: an unknown account's "free balance 0.0000" was on stdout; review 313: a
            # refused create-account's line too, and each code names its own limit)
            print(
                f"ringex admin: account {reply.account}: {reply.code.name}: "
                f"{_refusal(cfg, args, reply, held)}",
                file=sys.stderr,
            )
            continue
        where = f" (seq {reply.seq})" if ok else ""
        # a transfer's reply carries the asset's free balance, in minor units; a
        # create-account's carries none (review 45: "free balance 0" of a funded account)
        shown = "" if args.admin_command == "create-account" else _free_balance(cfg, args, reply)
        print(f"account {reply.account}: {reply.code.name}{where}{shown}")
    return code


def _refusal(cfg: RingexConfig, args: argparse.Namespace, reply: AccountReply, held: int) -> str:
    """What was asked and the limit that refused it, per result code (review 313: a deposit
    past the asset's total named the account's free balance, a short withdrawal not what
    open orders hold)."""
    if args.admin_command == "create-account":
        return "create-account refused, the account is open"
    asked = f"{args.admin_command} of {cut_values(args.amount)} {args.asset} refused"
    if reply.code == ResultCode.DUPLICATE_TRANSFER and args.key is not None:  # (review 239)
        return f"{asked}: key {args.key} was used by another transfer"
    if reply.code == ResultCode.UNKNOWN_ACCOUNT:
        return asked
    if reply.code == ResultCode.INVALID_AMOUNT:
        return f"{asked}: a transfer moves more than 0"
    if reply.code == ResultCode.BALANCE_LIMIT:
        total = _decimal(MAX_UNITS, cfg.asset(args.asset).decimals)  # (accounts.MAX_TOTAL)
        return f"{asked}: the {args.asset} of every account would pass {total} in all"
    asked += _free_balance(cfg, args, reply)
    if reply.code == ResultCode.INSUFFICIENT_BALANCE:
        asked += f", held by open orders {_decimal(held, cfg.asset(args.asset).decimals)}"
    return asked


def _free_balance(cfg: RingexConfig, args: argparse.Namespace, reply: AccountReply) -> str:
    """A transfer reply's free balance in the asset's decimals, as ``balances`` shows it
    (review 45: it was printed in minor units)."""
    return f", free balance {_decimal(reply.balance, cfg.asset(args.asset).decimals)}"


def _print_balances(cfg: RingexConfig, account: int, balances: list[Balance], as_json: bool) -> int:
    """One line per asset (free, then held by open orders), or one JSON object."""
    decimals = {a.id: (a.name, a.decimals) for a in cfg.assets}
    shown: dict[str, dict[str, str]] = {}
    for b in balances:
        name, places = decimals.get(b.asset, (str(b.asset), 0))
        shown[name] = {"free": _decimal(b.free, places), "locked": _decimal(b.reserved, places)}
    if as_json:
        print(json.dumps({"account": account, "balances": shown}))
        return 0
    if not shown:
        print(f"account {account}: no balances")
    for name, row in shown.items():
        print(f"account {account} {name:6} free {row['free']:>24}  locked {row['locked']:>24}")
    return 0


def _decimal(units: int, places: int) -> str:
    return f"{Decimal(units).scaleb(-places):.{places}f}"


def add_admin(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    profile_args: Callable[[argparse.ArgumentParser], None],
) -> None:
    """The ``admin`` parser and its subcommands, each with ``profile_args``."""
    admin = sub.add_parser("admin", help="accounts, deposits, halts in a running exchange")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_sub.add_parser("create-account", help="open an account")
    create.add_argument("--account", type=ascii_int, required=True, action=Once)
    for name in ("deposit", "withdraw"):
        move = admin_sub.add_parser(name, help=f"{name} a decimal amount of an asset")
        move.add_argument("--account", type=ascii_int, required=True, action=Once)
        move.add_argument("--asset", required=True, action=Once, help="asset name, e.g. USD")
        move.add_argument("--amount", required=True, action=Once, help="decimal, e.g. 1000.50")
        move.add_argument(
            "--key", type=ascii_int, action=Once, help="idempotency key (default: a fresh one)"
        )
    for name in ("halt", "resume"):
        halt = admin_sub.add_parser(name, help=f"{name} trading in a symbol")
        halt.add_argument("symbol")
    end = admin_sub.add_parser(
        "end-session", help="end the trading session: expire the DAY orders (END_OF_SESSION)"
    )
    end.add_argument("symbol", nargs="?", help="only this symbol (default: every symbol)")
    snap = admin_sub.add_parser(
        "snapshot", help="have the matchers write a snapshot of their books now (SNAPSHOT)"
    )
    snap.add_argument("symbol", nargs="?", help="only its matcher's (default: every matcher)")
    balances = admin_sub.add_parser("balances", help="an account's balances, from the router")
    balances.add_argument("--account", type=ascii_int, required=True, action=Once)
    balances.add_argument("--json", action="store_true", help="machine-readable output")
    cancel = admin_sub.add_parser(
        "cancel-all", help="cancel an account's open orders (a kill switch), in one command"
    )
    whose = cancel.add_mutually_exclusive_group(required=True)
    whose.add_argument("--account", type=ascii_int, action=Once, help="this account's orders")
    whose.add_argument(
        "--every-account", action="store_true", help="every account's orders (the whole book)"
    )
    cancel.add_argument("--symbol", action=Once, help="only on this symbol (default: every symbol)")
    users = admin_sub.add_parser("users", help="the FIX users: comp id, account, session")
    users.add_argument("--json", action="store_true", help="machine-readable output")
    remove = admin_sub.add_parser(
        "remove-user", help="take a user off: no logon, its sessions and API keys end"
    )
    remove.add_argument("--comp-id", required=True, action=Once, help="its SenderCompID")
    remove.add_argument(
        "--cancel-orders", action="store_true", help="also cancel its account's open orders"
    )
    passwd = admin_sub.add_parser(
        "set-password", help="a user's new password: its FIX sessions log on again with it"
    )
    passwd.add_argument("--comp-id", required=True, action=Once, help="its SenderCompID")
    _password_args(passwd)
    passwd.add_argument(
        "--revoke-keys", action="store_true", help="also revoke its API keys (their streams end)"
    )
    keys = admin_sub.add_parser("keys", help="the REST API's keys (never a secret)")
    keys.add_argument(
        "--comp-id", type=named, action=Once, help="only this user's (default: every key)"
    )
    keys.add_argument("--json", action="store_true", help="machine-readable output")
    revoke = admin_sub.add_parser("revoke-key", help="revoke one API key by its id")
    revoke.add_argument("--api-key", required=True, action=Once, help="its public id")
    settings = admin_sub.add_parser(
        "set-user", help="a user's settings over the gateway's (cancel on disconnect, session)"
    )
    settings.add_argument("--comp-id", required=True, action=Once, help="its SenderCompID")
    for option, kind, what in (
        ("--cancel-on-disconnect", on_off, "cancel its orders when its session disconnects"),
        ("--reset-on-logon", on_off, "sequence numbers back to 1 at each Logon (test rigs)"),
        ("--min-heartbeat-s", seconds_or_gateway, "the least HeartBtInt its Logon may ask"),
        ("--max-heartbeat-s", seconds_or_gateway, "the largest HeartBtInt its Logon may ask"),
        ("--sending-time-tolerance-s", seconds_or_gateway, "SendingTime further off: refused"),
    ):
        settings.add_argument(
            option, type=kind, default=argparse.SUPPRESS, action=Once,
            help=f"{what} (gateway: the gateway's setting)",
        )  # fmt: skip
    user = admin_sub.add_parser("add-user", help="a FIX user with a funded account")
    user.add_argument("--username", required=True, action=Once)
    _password_args(user)
    user.add_argument(
        "--cancel-on-disconnect", type=on_off, default=None, action=Once,
        help="on, off or gateway: cancel its orders when its session disconnects (default: "
        "the gateway's setting)",
    )  # fmt: skip
    user.add_argument("--comp-id", action=Once, help="its SenderCompID (default: the username)")
    user.add_argument(
        "--account", type=ascii_int, action=Once, help="its account (default: the next free one)"
    )
    user.add_argument(
        "--deposit", action="append", default=[], metavar="ASSET=AMOUNT", help="repeatable"
    )
    for p in admin_sub.choices.values():
        profile_args(p)


def _password_args(parser: argparse.ArgumentParser) -> None:
    secret = parser.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--password", action=Once,
        help="its FIX password (`ps` shows it: prefer --password-stdin)",
    )  # fmt: skip
    secret.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin's first line"
    )
