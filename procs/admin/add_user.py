"""``ringex admin add-user``: a FIX user with its account, opened and funded, in the order
that never strands money: every argument is checked before anything is opened, the user is
stored as soon as its account is open, then the deposits go in one at a time."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from config.schema import RingexConfig
from procs.admin.client import AdminClient, AdminError, check_account, to_minor_units
from procs.admin.users import open_users
from procs.common.change_log import ChangeMadeError
from procs.common.result_codes import ResultCode
from procs.common.users import (
    UserExistsError,
    UsersFileError,
    UserStore,
    account_refused,
    comp_id_refused,
    password_refused,
)


def add_user(
    cfg: RingexConfig, args: argparse.Namespace, connect: Callable[[], AdminClient | None]
) -> int:
    """A FIX user (the gateways' user store) with its account, opened and funded; its exit
    status. ``connect``: the admin client of the running instance (None: it is not, said)."""
    store = open_users(cfg, "add-user")  # an unreadable file: one line naming it (review 45)
    if store is None:
        return 1
    comp_id = args.username if args.comp_id is None else args.comp_id  # "" is refused below
    chosen = args.account is not None  # 0 is a choice too (refused below), not "none"
    account = args.account if chosen else max((u.account for u in store.users()), default=99) + 1
    if not chosen and account == cfg.risk.fee_account:
        account += 1  # a default never lands on the fee account
    if account == cfg.risk.fee_account:
        print(fee_account_taken(cfg, "add-user"), file=sys.stderr)
        return 2
    # --username beside --comp-id is only shown, yet held to a comp id's rules: an empty,
    # multi-line, escaped or undecodable name would be echoed into the result (review 203).
    shown = comp_id_refused(args.username).replace("comp id", "username", 1)
    if refused := (args.comp_id is not None and shown) or _credentials_refused(
        comp_id, args.password
    ):  # before anything is opened
        print(f"ringex admin add-user: {refused}", file=sys.stderr)
        return 2
    existing = store.get(comp_id)
    if existing is not None:  # its logon names its account for good
        print(f"ringex admin add-user: comp id {comp_id} is a user already (account "
              f"{existing.account}); deposit to it with `ringex admin deposit`",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        check_account(account)
        if refused := account_refused(account):  # a default past it: the highest user's next
            raise AdminError(refused + ("" if chosen else "; give a free one with --account"))
    except AdminError as exc:
        print(f"ringex admin add-user: {exc}", file=sys.stderr)
        return 2
    deposits = [d.split("=", 1) for d in args.deposit]
    if any(len(d) != 2 for d in deposits):
        print("ringex admin add-user: --deposit takes ASSET=AMOUNT", file=sys.stderr)
        return 2
    try:
        for asset, amount in deposits:
            if to_minor_units(cfg, asset, amount)[1] <= 0:  # else a withdrawal, or nothing
                raise AdminError(f"deposit {asset}={amount} must be more than 0")
    except (AdminError, KeyError) as exc:  # (a KeyError's str() quotes its message)
        print(f"ringex admin add-user: {exc.args[0]}", file=sys.stderr)
        return 2
    client = connect()
    if client is None:
        return 1
    try:
        opened = open_account(client, cfg, account, chosen)
        if opened is None:
            return 1
        account = opened
        # The account is open: its user is stored now, so that no deposit below (refused,
        # or the command killed) leaves money in an account no one can log on to.
        refused_code, undurable = _stored(store, comp_id, args, account)
        if refused_code is not None:
            return refused_code
        done, refused = deposit_in_turn(client, account, deposits)
    except (AdminError, KeyError, UsersFileError) as exc:
        print(f"ringex admin: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    funded = ", ".join(f"{a} {m}" for a, m in done) or "nothing"
    print(f"user {args.username}: SenderCompID {comp_id}, account {account}, deposited {funded}")
    if undurable:  # stored all the same: as set-password says it (reviews 174, 286)
        print(f"ringex admin add-user: {undurable}", file=sys.stderr)
    if refused:
        return _deposit_refused(args.username, account, refused, deposits[len(done) + 1 :])
    return 1 if undurable else 0


def _deposit_refused(username: str, account: int, refused: str, unsent: list[list[str]]) -> int:
    """Says a deposit was refused and what was not sent after it; exit status 1."""
    rest = ", ".join(f"{a} {m}" for a, m in unsent) or "none"
    print(f"ringex admin add-user: deposit {refused}; not sent: {rest} (user {username} is "
          f"stored with account {account}: deposit the rest with `ringex admin deposit "
          f"--account {account}`)", file=sys.stderr)  # fmt: skip
    return 1


def _stored(
    store: UserStore, comp_id: str, args: argparse.Namespace, account: int
) -> tuple[int | None, str]:
    """Stores the user of the account just opened: (None, or the exit status, said why;
    the change made whose fsync failed, "" where none: the user is stored all the same)."""
    try:
        cod = args.cancel_on_disconnect  # (``users.on_off``'s: None, the gateway's)
        store.add(comp_id, args.password, account, cancel_on_disconnect=cod, new=True)
    except UserExistsError as exc:  # another add-user took it since the check above
        print(f"ringex admin add-user: {exc}, added meanwhile; account {account} was "
              "opened for it and stays empty", file=sys.stderr)  # fmt: skip
        return 2, ""
    except ValueError as exc:  # refused by the store (checked before: a defence)
        print(f"ringex admin add-user: {exc}; account {account} was opened for it and stays "
              "empty", file=sys.stderr)  # fmt: skip
        return 2, ""
    except ChangeMadeError as exc:  # an OSError, but stored: its deposits follow (286)
        return None, str(exc)
    except OSError as exc:  # a full disk, say: the users file stays as it was
        print(f"ringex admin add-user: {comp_id} not added: the users file could not be "
              f"written ({exc.strerror or exc}); account {account} was opened for it and "
              "stays empty", file=sys.stderr)  # fmt: skip
        return 1, ""
    return None, ""


def open_account(client: AdminClient, cfg: RingexConfig, account: int, chosen: bool) -> int | None:
    """The account opened for the user: ``account``, or for a default one the next that did
    not exist; None when it could not be (said)."""
    opened = client.create_account(account)
    # A default account is a new one: one that exists (opened by create-account, or by
    # another add-user just now) may hold someone's money. An explicit one may exist.
    for _ in range(1000):
        if chosen or opened.code != ResultCode.ACCOUNT_EXISTS:
            break
        account += 1 + (account + 1 == cfg.risk.fee_account)
        if refused := account_refused(account):  # walked past a user's largest (review 232)
            print(f"{refused}; give a free one with --account", file=sys.stderr)
            return None
        opened = client.create_account(account)
    allowed = (ResultCode.OK, ResultCode.ACCOUNT_EXISTS) if chosen else (ResultCode.OK,)
    if opened.code not in allowed:
        print(f"account {account}: {opened.code.name}", file=sys.stderr)
        return None
    return account


def deposit_in_turn(
    client: AdminClient, account: int, deposits: list[list[str]]
) -> tuple[list[list[str]], str]:
    """``add-user``'s deposits (``[asset, amount]``), one after another until one is not
    made: those made, and the one that was not with why ("" when all were made)."""
    done: list[list[str]] = []
    for asset, amount in deposits:
        try:
            reply = client.transfer(account, asset, amount)
        except AdminError as exc:  # no answer: it may still be applied (the error names its key)
            return done, f"{asset} {amount}: {exc}"
        if reply.code != ResultCode.OK:
            return done, f"{asset} {amount}: {reply.code.name}"
        done.append([asset, amount])
    return done, ""


def fee_account_taken(cfg: RingexConfig, command: str) -> str:
    fee = cfg.risk.fee_account
    return (
        f"ringex admin {command}: account {fee} is the exchange's fee account "
        f"(risk.fee_account = {fee}), which collects every fee: pick another"
    )


def _credentials_refused(comp_id: str | None, password: str | None) -> str:
    """Why the user store would refuse these, or no logon could send the password ("" when
    neither). The password itself is never shown."""
    return comp_id_refused(comp_id) or password_refused(password)
