"""`ringex admin`'s way into a running exchange: the admin gateway's rings (id 0).

Account commands (create, deposit, withdraw) travel the sequenced path like any gateway's:
the router checks them, journals them and answers with an ``AccountReply`` once they are
durable, so a replay reproduces every balance. Halt, resume and end of session are
``AdminCommand``s the router sequences and routes to the symbol's matcher (symbol 0: every
matcher); a cancel-all is a ``MassCancel`` like a gateway's, answered by the router's
verdict. Balances are read with a ``WatchBalances`` of the shortest lease (never journaled).
One admin client at a time: the ring refuses a second live producer, so clients
take turns on a lock (``var/<instance>/run/admin.lock``, an ``flock``: a killed holder's goes
with it) before they take the ring's roles; a second `ringex admin` waits for the first.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

from config.refused_value import cut_values
from config.schema import RingexConfig
from procs.common.record_codec import RecordCodec
from procs.common.records import (
    NOT_OPEN,
    AccountReply,
    AdminCommand,
    Balance,
    CreateAccount,
    MassCancel,
    Record,
    Rejected,
    Transfer,
    WatchBalances,
)
from procs.common.result_codes import ResultCode
from procs.common.topology import (
    ADMIN_GATEWAY,
    gateway_commands,
    gateway_consumer,
    gateway_replies,
)
from procs.common.types import AdminAction
from shm import Producer, Ring, ShmError
from shm.inspect import list_segments

#: A reply a command is answered with (``AccountReply``, or a mass cancel's ``Rejected``).
R = TypeVar("R", AccountReply, Rejected)


class AdminError(RuntimeError):
    """The exchange refused or did not answer; the message says which and why."""


#: The most minor units an amount may be: records carry them as signed 64-bit integers.
MAX_UNITS = 2**63 - 1
#: An amount as an operator types one: ASCII digits, one '.', an exponent. ``Decimal`` alone
#: would also take "1_000" and any script's digits (Arabic-Indic "\u0661\u0660" is 10).
_AMOUNT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")


def to_minor_units(cfg: RingexConfig, asset: str, amount: str) -> tuple[int, int]:
    """(asset id, integer minor units) of a decimal ``amount`` of ``asset``; a precision the
    asset does not have is refused, naming both."""
    spec = cfg.asset(asset)
    if not _AMOUNT.fullmatch(amount.strip()):  # Infinity, NaN, 0x10, 1_000 alike
        raise AdminError(
            f"amount {cut_values(repr(amount))} is not a decimal number (ASCII digits, one '.', an "
            "exponent)"
        )
    shown = cut_values(amount)  # as the messages below show it (review 155: 3,000 digits, whole)
    try:
        value = Decimal(amount)
    except ArithmeticError:  # an exponent past what Decimal holds, either way
        raise AdminError(
            f"amount {shown} is out of range: at most {MAX_UNITS} minor units of {asset}, "
            f"{spec.decimals} decimal places"
        ) from None
    # Exact, digit by digit: no context arithmetic, which rounds past 28 digits.
    sign, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)  # finite
    kept = list(digits)
    if not any(kept):
        return spec.id, 0  # zero, however written (the router refuses it, naming it)
    while len(kept) > 1 and kept[-1] == 0 and exponent < 0:  # 1.50 is 1.5
        kept.pop()
        exponent += 1
    if exponent < -spec.decimals:
        raise AdminError(f"amount {shown} has more than {asset}'s {spec.decimals} decimal places")
    if len(kept) + exponent + spec.decimals > 19:  # more digits than 2**63 has
        raise AdminError(
            f"amount {shown} {asset} is beyond the limit of {MAX_UNITS} minor units "
            "(a record's signed 64 bits)"
        )
    units = int("".join(map(str, kept))) * 10 ** (exponent + spec.decimals)
    if units > MAX_UNITS:
        raise AdminError(
            f"amount {shown} {asset} is {units} minor units, beyond the limit of "
            f"{MAX_UNITS} (a record's signed 64 bits)"
        )
    return spec.id, -units if sign else units


def check_account(account: int) -> None:
    """An account id a record carries: 1..2**63-1 (0 means every account in a mass cancel)."""
    if not 0 < account <= MAX_UNITS:
        raise AdminError(f"account {account} is outside 1..{MAX_UNITS}")


def symbol_id_of(cfg: RingexConfig, symbol: str) -> int:
    """The id of a configured symbol; an unknown one is refused, naming the known ones."""
    for spec in cfg.symbols:
        if spec.name == symbol:
            return spec.id
    known = ", ".join(s.name for s in cfg.symbols)
    raise AdminError(f"symbol {cut_values(repr(symbol))} is not configured (symbols: {known})")


class AdminBusyError(AdminError):
    """Another admin client held the admin ring for as long as this one would wait."""


def _take_turn(cfg: RingexConfig, wait_s: float) -> int:
    """The admin lock's descriptor, held (this client's turn), waiting at most ``wait_s``
    for another client's turn to end (0: one try)."""
    path = Path(cfg.var_dir) / cfg.instance / "run" / "admin.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # a file in the way, another user's directory (review 155)
        raise AdminError(f"the admin lock {path} cannot be opened: {exc.strerror}") from None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AdminBusyError(
                f"the admin ring is another admin command's (pid {holder}, {path}) and was "
                f"not let go within {wait_s} s; try again once it is done"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # who holds it, for the message above
        return fd


class AdminClient:
    def __init__(self, cfg: RingexConfig, wait_s: float = 10.0) -> None:
        """The admin ring's roles, once every other client has let them go (waiting at most
        ``wait_s``, else ``AdminBusyError``). ``ShmError``: the instance is not running."""
        self.cfg = cfg
        codec = RecordCodec()
        wait = cfg.wait.build()
        ring = Ring.attach(cfg.instance, gateway_commands(ADMIN_GATEWAY), codec)
        found = [s for s in list_segments(cfg.instance) if s.name == ring.name]
        if found and found[0].stale:  # a dead instance's rings, not removed yet
            ring.close()
            raise ShmError(f"ring {ring.name}: every process it names is gone {found[0].pids}")
        try:
            self._turn = _take_turn(cfg, wait_s)
        except BaseException:
            ring.close()
            raise
        out: Producer[Record] | None = None
        replies: Ring[Record] | None = None
        try:  # refused (another admin's roles): nothing held, nothing mapped
            out = ring.producer(wait)
            replies = Ring.attach(cfg.instance, gateway_replies(ADMIN_GATEWAY), codec)
            self._in = replies.consumer(gateway_consumer(ADMIN_GATEWAY), wait)
        except BaseException:
            if out is not None:
                out.close()
            ring.close()
            if replies is not None:
                replies.close()
            os.close(self._turn)
            raise
        self._out = out

    def close(self) -> None:
        """Give up both roles and unmap the rings (a long-lived caller, the supervisor,
        makes a client a day)."""
        self._out.close()
        self._in.close()
        self._out.ring.close()
        self._in.ring.close()
        if self._turn >= 0:  # the lock goes with its last descriptor: the next one's turn
            os.close(self._turn)
            self._turn = -1

    def _ref(self) -> int:
        return time.time_ns()

    def _send(self, command: Record, deadline: float, timeout_s: float) -> None:
        """Into the admin ring, waiting for room until ``deadline`` at most (a router that is
        down leaves the ring full: the call times out, it does not hang)."""
        while not self._out.try_publish(command):
            if time.monotonic() >= deadline:
                raise AdminError(
                    f"the admin command ring stayed full for {timeout_s} s: is the router running?"
                )
            time.sleep(0.01)

    def _call(self, command: Record, ref: int, timeout_s: float, answer: type[R]) -> R:
        """Send ``command`` and wait for the router's ``answer`` to ``ref``."""
        deadline = time.monotonic() + timeout_s
        self._send(command, deadline, timeout_s)
        while time.monotonic() < deadline:
            for reply in self._in.take(64, timeout_s=0.1):
                if isinstance(reply, answer) and reply.client_ref == ref:
                    return reply
        raise AdminError(f"no answer from the router within {timeout_s} s (is it running?)")

    def create_account(self, account: int, timeout_s: float = 10.0) -> AccountReply:
        check_account(account)
        ref = self._ref()
        command = CreateAccount(0, 0, ADMIN_GATEWAY, 0, ref, account)
        return self._call(command, ref, timeout_s, AccountReply)

    def transfer(
        self, account: int, asset: str, amount: str, key: int | None = None, timeout_s: float = 10
    ) -> AccountReply:
        """Deposit (``amount`` > 0) or withdraw (< 0) a decimal amount. ``key`` (1..2**63-1)
        makes it idempotent (default: a fresh one, said on a timeout so the retry can use
        it): a transfer sent again with its key is applied once, and answered OK again."""
        check_account(account)
        asset_id, units = to_minor_units(self.cfg, asset, amount)
        if key is not None and not 0 < key <= MAX_UNITS:
            raise AdminError(f"idempotency key {key} is outside 1..{MAX_UNITS}")
        ref = self._ref()
        key = ref if key is None else key
        transfer = Transfer(*(0, 0, ADMIN_GATEWAY, 0, ref, account, asset_id, units, key))
        try:
            return self._call(transfer, ref, timeout_s, AccountReply)
        except AdminError as exc:  # it may still be applied: the retry must not double it
            raise AdminError(
                f"{exc}; the transfer may still be applied: retry with --key {key} so that it "
                "is applied once"
            ) from None
        except KeyboardInterrupt:  # likewise once it may be in the ring (review 45)
            raise AdminError(
                f"interrupted: the transfer may still be applied: retry with --key {key} so "
                "that it is applied once"
            ) from None

    def halt(self, symbol: str, resume: bool = False) -> None:
        action = AdminAction.RESUME if resume else AdminAction.HALT
        # arg: this command's reference, by which a restarted router knows it journaled it
        command = AdminCommand(0, 0, action, self.cfg.symbol(symbol).id, time.time_ns())
        self._send(command, time.monotonic() + 10.0, 10.0)

    def end_session(self, symbol: str | None = None, timeout_s: float = 10.0) -> None:
        """END_OF_SESSION for ``symbol``, or for every symbol (None: symbol 0, which the
        router sends to every matcher): each book expires its DAY orders. Waits at most
        ``timeout_s`` for room in the ring (0: one try, for a caller that must not block)."""
        self._to_books(AdminAction.END_OF_SESSION, symbol, timeout_s)

    def snapshot(self, symbol: str | None = None, timeout_s: float = 10.0) -> None:
        """SNAPSHOT for the matcher owning ``symbol``, or for every matcher (None): each
        writes its books' snapshot once it has executed what came before (a restart then
        replays less of the journal)."""
        self._to_books(AdminAction.SNAPSHOT, symbol, timeout_s)

    def _to_books(self, action: AdminAction, symbol: str | None, timeout_s: float) -> None:
        symbol_id = 0 if symbol is None else symbol_id_of(self.cfg, symbol)
        command = AdminCommand(0, 0, action, symbol_id, time.time_ns())
        self._send(command, time.monotonic() + timeout_s, timeout_s)

    def balances(self, account: int, timeout_s: float = 10.0) -> list[Balance]:
        """``account``'s balances as the router holds them now: one ``Balance`` per asset
        (none for an account without any). A watch with the shortest lease, dropped once its
        snapshot is here (watches are never journaled: this changes nothing)."""
        check_account(account)
        ref = self._ref()
        deadline = time.monotonic() + timeout_s
        self._send(WatchBalances(0, 0, ADMIN_GATEWAY, 0, ref, account, 1), deadline, timeout_s)
        got: list[Balance] = []
        try:
            while time.monotonic() < deadline:
                for reply in self._in.take(64, timeout_s=0.1):
                    if isinstance(reply, Balance) and reply.client_ref == ref:
                        if reply.last == NOT_OPEN:  # not an open account without funds
                            raise AdminError(f"UNKNOWN_ACCOUNT: account {account} is not open")
                        if reply.asset:
                            got.append(reply)
                        if reply.last:
                            return got
            raise AdminError(f"no answer from the router within {timeout_s} s (is it running?)")
        finally:
            drop = WatchBalances(0, 0, ADMIN_GATEWAY, 0, self._ref(), account, 0)
            self._out.try_publish(drop)  # else its 1 ms lease lapses by itself

    def cancel_all(self, account: int, symbol: str | None, timeout_s: float = 10.0) -> None:
        """Cancel every open order of ``account`` (0: of every account) on ``symbol`` (None:
        every symbol), in one ``MassCancel``. Returns once the router has it durable (the
        matchers then end the orders); ``AdminError`` when it refuses or does not answer."""
        if account:
            check_account(account)
        symbol_id = 0 if symbol is None else symbol_id_of(self.cfg, symbol)
        ref = self._ref()
        command = MassCancel(0, 0, ADMIN_GATEWAY, 0, ref, account, symbol_id)
        try:
            verdict = self._call(command, ref, timeout_s, Rejected)
        except AdminError as exc:  # it may still be applied
            raise AdminError(
                f"{exc}; the cancel may still be applied: see the open orders before sending "
                "it again"
            ) from None
        if verdict.code != ResultCode.OK:
            whose = f"account {account}" if account else "every account"
            raise AdminError(f"cancel-all of {whose} refused: {verdict.code.name}")
