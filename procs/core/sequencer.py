"""The router's pure core: gateway commands in, sequenced commands and replies out.

``Sequencer.submit(command, now_ns)`` decides one command from a gateway:

- refused (rate limit, duplicate client order id, a risk check, an unknown symbol): a reply to
  the gateway (``Rejected`` or ``AccountReply`` with the code), no sequence number, nothing
  journaled; an admin command for no symbol of ours is dropped unanswered (it names no
  gateway session to answer);
- not the sender's to give: an operator's command (``operators_only``) that came on a trading
  gateway's ring, which the router refuses ``NOT_PERMITTED`` before ``submit`` sees it
  (``not_permitted``; an admin command, which names no session, is dropped): only the admin
  ring, gateway 0, carries them (review 343);
- accepted: the command stamped with the next global ``seq`` and ``ts_ns = now_ns`` (a new
  order also gets the next ``order_id``), plus where it goes: the matcher that owns its symbol
  (every matcher for a symbol-0 mass cancel or admin command), or nowhere for an account
  command, whose ``AccountReply`` is sent once the command is durable; an accepted mass
  cancel's gateway gets ``Rejected`` with code OK then (its acknowledgement).

``apply(event)`` feeds the matchers' events back (settlement, order lifetimes). Events of a
command at or below ``settled_upto`` were applied already (a replay after a restart covered
them) and are ignored, so a restarted router never settles twice.

Only accepted commands are journaled, and each is replayed through ``replay(command)``,
which applies it without the soft checks (rate, duplicates) and insists that the risk checks
pass again: settlement never lowers a free balance, so a replay that settles sooner than the
live router did can only have more free balance at every command (see ``accounts.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from config.schema import RingexConfig
from procs.common.journal import ReplayError
from procs.common.records import (
    AccountReply,
    AdminCommand,
    CancelOrder,
    CreateAccount,
    FeeSchedule,
    MassCancel,
    NewOrder,
    OrderDone,
    OrderRecord,
    Record,
    Rejected,
    ReplaceOrder,
    SymbolRules,
    Transfer,
)
from procs.common.result_codes import ResultCode
from procs.common.token_bucket import TokenBucket
from procs.common.topology import ADMIN_GATEWAY
from procs.core import fees, symbol_rules
from procs.core.accounts import Accounts
from procs.core.symbols import symbol_specs

R = TypeVar("R", bound=Record)

#: Matcher name for a command that goes to no matcher (account commands).
NOWHERE: tuple[str, ...] = ()
_OK = ResultCode.OK  # a module constant: an enum member lookup costs ~60 ns a time


#: The records ``submit`` sequences; anything else on a gateway's ring is not a command.
SEQUENCED = frozenset(
    (NewOrder, CancelOrder, ReplaceOrder, MassCancel, CreateAccount, Transfer, AdminCommand)
)


#: The records an operator's command can be (``operators_only`` says which are: a mass
#: cancel only of every account); a cheap first test on the intake's path.
OPERATORS = frozenset((CreateAccount, Transfer, AdminCommand, MassCancel))


class Decision(msgspec.Struct, frozen=True):
    """What became of one gateway command: ``command`` is the sequenced record (None when
    refused), ``matchers`` where it goes, ``reply`` what the gateway is told (now when
    refused; after the command is durable when it is an account command). ``journaled``:
    the seq of a command a run before a restart journaled, read again (``command`` None:
    not sequenced twice; ``reply`` the answer it is still owed, ``answered_again``).
    A msgspec Struct: one is made per command, and its ``__init__`` costs a fifth of a
    frozen dataclass's."""

    command: Record | None
    matchers: tuple[str, ...] = NOWHERE
    reply: Record | None = None
    journaled: int = 0


class RouterState(msgspec.Struct, frozen=True, array_like=True):
    next_seq: int
    next_order_id: int
    settled_upto: int
    accounts: bytes
    live_client_ids: list[tuple[int, int, int, int]]  # gateway, session, client_ref, order_id
    #: (symbol, *rules) the router journaled last for each symbol; none in an older snapshot
    rules: list[tuple[int, ...]] = []


@dataclass(slots=True)
class Sequencer:
    cfg: RingexConfig
    accounts: Accounts
    next_seq: int = 1
    next_order_id: int = 1
    settled_upto: int = 0  # events of commands up to here are applied
    _all: tuple[str, ...] = ()
    _routes: dict[int, tuple[str, ...]] = field(default_factory=dict)  # symbol id -> (owner,)
    _client_ids: dict[tuple[int, int, int], int] = field(default_factory=dict)
    _by_order: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    _buckets: dict[int, TokenBucket] = field(default_factory=dict)
    #: symbol id -> the rules last journaled for it (``symbol_rules.RULE_FIELDS``)
    rules: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for matcher in self.cfg.matchers:
            for name in matcher.symbols:
                self._routes[self.cfg.symbol(name).id] = (matcher.name,)
        self._all = tuple(m.name for m in self.cfg.matchers)

    # -- live ---------------------------------------------------------------------------------

    def submit(self, command: Record, now_ns: int) -> Decision:
        kind = type(command)
        if kind is NewOrder or kind is CancelOrder or kind is ReplaceOrder:
            return self._order(command, now_ns)  # type: ignore[arg-type]
        if kind is MassCancel:
            return self._mass_cancel(command, now_ns)  # type: ignore[arg-type]
        if kind is CreateAccount or kind is Transfer:
            return self._account(command, now_ns)  # type: ignore[arg-type]
        if kind is AdminCommand:
            admin: AdminCommand = command  # type: ignore[assignment]
            targets = self._targets(admin.symbol)
            if targets is None:
                return Decision(None)  # an admin command for no symbol of ours: dropped
            return Decision(self._stamp(admin, now_ns), targets)
        raise TypeError(f"the router does not sequence {kind.__name__} records")

    def _order(self, cmd: NewOrder | CancelOrder | ReplaceOrder, now_ns: int) -> Decision:
        owner = self._routes.get(cmd.symbol)
        if owner is None:
            return Decision(None, reply=_reject(cmd, ResultCode.UNKNOWN_SYMBOL))
        # a cancel only lowers risk and is never held back (review 48: the gateway's cancels
        # on disconnect were refused past the rate, and the gone session's orders stayed);
        # a client's cancels are bounded by its session's and key's own limits
        if not isinstance(cmd, CancelOrder) and not self._allow(cmd.account, now_ns):
            return Decision(None, reply=_reject(cmd, ResultCode.ACCOUNT_RATE_LIMITED))
        if isinstance(cmd, NewOrder):
            key = (cmd.gateway, cmd.session, cmd.client_ref)
            if key in self._client_ids:
                return Decision(None, reply=_reject(cmd, ResultCode.DUPLICATE_CLIENT_ORDER_ID))
            code = self.accounts.market_sell_notional(cmd)
            if code != _OK:
                return Decision(None, reply=_reject(cmd, code))
            order = msgspec.structs.replace(
                cmd, seq=self.next_seq, ts_ns=now_ns, order_id=self.next_order_id
            )
            code, order = self.accounts.reserve_new(order)
            if code != _OK:
                return Decision(None, reply=_reject(cmd, code))
            self.next_order_id += 1
            self.next_seq += 1
            self._client_ids[key] = order.order_id
            self._by_order[order.order_id] = key
            return Decision(order, owner)
        if isinstance(cmd, ReplaceOrder):
            code = self.accounts.replace_sell_notional(cmd)
            if code == _OK:
                code = self.accounts.reserve_replace(cmd)
            if code != _OK:
                return Decision(None, reply=_reject(cmd, code))
        return Decision(self._stamp(cmd, now_ns), owner)

    def _mass_cancel(self, cmd: MassCancel, now_ns: int) -> Decision:
        """A mass cancel draws on the account's command rate like any other command (one
        for symbol 0 scans every book of every matcher), except the operator's (the admin
        gateway's): a kill switch is never held back by the rate of the account it stops.
        The gateway is told the verdict either way (``Rejected`` with the code; OK once the
        command is durable), since cancelling nothing says nothing: its client must not be
        told "done" for a refusal. An account never opened is refused (review 45: the
        operator's kill switch for a mistyped account answered "done"); replay does not ask."""
        targets = self._targets(cmd.symbol)
        code = ResultCode.UNKNOWN_SYMBOL
        if targets is not None:
            code = _OK
            if cmd.account and not self.accounts.known(cmd.account):
                code = ResultCode.UNKNOWN_ACCOUNT
            elif cmd.gateway != ADMIN_GATEWAY and not self._allow(cmd.account, now_ns):
                code = ResultCode.ACCOUNT_RATE_LIMITED
        reply = mass_cancel_verdict(cmd, code)
        if targets is not None and code == _OK:
            return Decision(self._stamp(cmd, now_ns), targets, reply=reply)
        return Decision(None, reply=reply)

    def _account(self, cmd: CreateAccount | Transfer, now_ns: int) -> Decision:
        if isinstance(cmd, CreateAccount):
            code = self.accounts.create_account(cmd.account)
            asset = 0
        else:
            code = self.accounts.transfer(
                cmd.account, cmd.asset, cmd.amount, cmd.key, self.next_seq, now_ns
            )
            asset = cmd.asset
            if code == ResultCode.DUPLICATE_TRANSFER:
                done = self.accounts.repeat_of(cmd.account, cmd.asset, cmd.amount, cmd.key, now_ns)
                if done:  # applied once already: the same answer, nothing applied again
                    balance = self.accounts.balance(cmd.account, asset)[0]
                    return Decision(None, reply=_account_reply(cmd, done, asset, _OK, balance))
        # the free balance after it: refused, the one it was refused against
        balance = self.accounts.balance(cmd.account, asset)[0] if asset else 0
        if code != _OK:
            return Decision(None, reply=_account_reply(cmd, 0, asset, code, balance))
        seq = self.next_seq
        stamped = self._stamp(cmd, now_ns)
        return Decision(stamped, NOWHERE, _account_reply(cmd, seq, asset, code, balance))

    def fee_changes(self, now_ns: int) -> list[FeeSchedule]:
        """The configured fees and fee account the state does not hold yet, sequenced and
        applied (``fees.py``); the caller journals them. Raises ``FeeChangeError`` when open
        buys forbid a change (nothing is applied then)."""
        wanted = fees.changes(self.accounts, self.cfg)
        names = {s.id: s.name for s in self.cfg.symbols}  # the refusal names it as the config
        for symbol, maker, taker in wanted:  # check every one before any is applied
            if symbol:
                fees.check_schedule(self.accounts, symbol, maker, taker, names.get(symbol))
        account = self.cfg.risk.fee_account
        out = [
            self._stamp(FeeSchedule(0, 0, symbol, maker, taker, account), now_ns)
            for symbol, maker, taker in wanted
        ]
        for record in out:
            fees.apply(self.accounts, record)
        return out

    def rules_changes(self, now_ns: int) -> list[SymbolRules]:
        """The configured symbol rules this state has not journaled (a symbol's first, or
        changed), sequenced and recorded in ``rules``; the caller journals them and routes
        each to its symbol's matcher (``symbol_rules.py``)."""
        configured = [spec for m in self.cfg.matchers for spec in symbol_specs(self.cfg, m.name)]
        out = [
            self._stamp(record, now_ns) for record in symbol_rules.changes(configured, self.rules)
        ]
        for record in out:
            self.rules[record.symbol] = symbol_rules.rules_of(record)
        return out

    def matchers_for(self, command: Record) -> tuple[str, ...]:
        """The matchers a sequenced command goes to: its symbol's owner (an order, the
        symbol's rules); every matcher for a symbol-0 mass cancel or admin command; none for
        an account command or fees."""
        kind = type(command)
        if kind is ReplaceOrder or kind is NewOrder or kind is CancelOrder:  # the hot path
            return self._routes.get(command.symbol, NOWHERE)  # type: ignore[attr-defined]
        symbol: int | None = getattr(command, "symbol", None)
        if symbol is None or kind is FeeSchedule:
            return NOWHERE
        if symbol == 0 and not isinstance(command, (MassCancel, AdminCommand)):
            return NOWHERE
        return self._targets(symbol) or NOWHERE

    def _targets(self, symbol: int) -> tuple[str, ...] | None:
        return self._all if symbol == 0 else self._routes.get(symbol)

    def _stamp(self, cmd: R, now_ns: int) -> R:
        stamped = msgspec.structs.replace(cmd, seq=self.next_seq, ts_ns=now_ns)
        self.next_seq += 1
        return stamped

    def _allow(self, account: int, now_ns: int) -> bool:
        """A token bucket per account: ``max_commands_per_s`` deep, refilled at that rate."""
        bucket = self._buckets.get(account)
        if bucket is None:
            bucket = self._buckets[account] = TokenBucket(self.cfg.risk.max_commands_per_s, now_ns)
        return bucket.allow(now_ns)

    # -- events from the matchers ---------------------------------------------------------------

    def apply(self, event: Record) -> None:
        self.settle((event,))

    def settle(self, events: Iterable[Record]) -> None:
        """Apply matchers' events in order: the router's settlement, live and in replay (one
        call a batch: the loop is the hot path of both)."""
        settled_upto = self.settled_upto
        accounts = self.accounts
        handlers = accounts.handlers  # ``Accounts.apply``, one call less an event
        for event in events:
            kind = type(event)
            handler = handlers.get(kind)
            if handler is None:  # book levels (half of a matcher's events), status
                continue
            seq: int = getattr(event, "seq", 0)
            if seq <= settled_upto:
                continue
            if kind is Rejected:  # only the reject of the new order itself frees its id
                rejected: Rejected = event  # type: ignore[assignment]
                if accounts.new_order_seq(rejected.order_id) == seq:
                    key = self._by_order.pop(rejected.order_id, None)
                    if key is not None:
                        del self._client_ids[key]
            handler(event)
            if kind is OrderDone:  # the order is gone: its client order id is free again
                done: OrderDone = event  # type: ignore[assignment]
                key = self._by_order.pop(done.order_id, None)
                if key is not None:
                    del self._client_ids[key]

    def applied(self, upto_seq: int) -> None:
        """Every event of every command up to ``upto_seq`` has been applied."""
        self.settled_upto = max(self.settled_upto, upto_seq)

    # -- replay -------------------------------------------------------------------------------

    def replay(self, command: Record) -> None:
        """Re-apply a journaled (accepted) command: the counters follow the journal, and the
        risk checks must pass again (a failure means the journal and this state diverged)."""
        seq: int = getattr(command, "seq", 0)
        if seq != self.next_seq:
            raise ReplayError(f"journal has seq {seq} where {self.next_seq} was next")
        code = _OK
        kind = type(command)
        if kind is ReplaceOrder:  # 82% of the exchange-core mix: first
            code = self.accounts.reserve_replace(command, limits=False)  # type: ignore[arg-type]
        elif isinstance(command, NewOrder):
            if command.order_id != self.next_order_id:
                raise ReplayError(
                    f"journal has order id {command.order_id} at seq {seq}, expected "
                    f"{self.next_order_id}"
                )
            code, _ = self.accounts.reserve_new(command, limits=False)
            key = (command.gateway, command.session, command.client_ref)
            self._client_ids[key] = command.order_id
            self._by_order[command.order_id] = key
            self.next_order_id += 1
        elif isinstance(command, CreateAccount):
            code = self.accounts.create_account(command.account)
        elif isinstance(command, Transfer):
            code = self.accounts.transfer(
                command.account, command.asset, command.amount, command.key, seq, command.ts_ns
            )
        elif isinstance(command, SymbolRules):
            self.rules[command.symbol] = symbol_rules.rules_of(command)
        elif isinstance(command, FeeSchedule):
            try:
                fees.apply(self.accounts, command)
            except fees.FeeChangeError as exc:
                raise ReplayError(f"replay of seq {seq} {command!r} was refused: {exc}") from None
        if code != _OK:
            raise ReplayError(f"replay of seq {seq} {command!r} was refused: {code.name}")
        self.next_seq += 1

    # -- state --------------------------------------------------------------------------------

    def state(self) -> RouterState:
        return RouterState(
            self.next_seq,
            self.next_order_id,
            self.settled_upto,
            self.accounts.snapshot(),
            sorted((*key, oid) for key, oid in self._client_ids.items()),
            sorted((symbol, *rules) for symbol, rules in self.rules.items()),
        )

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.state())

    @classmethod
    def restore(cls, cfg: RingexConfig, snapshot: bytes) -> Sequencer:
        state = msgspec.msgpack.decode(snapshot, type=RouterState)
        seq = cls(cfg, Accounts.restore(cfg, state.accounts))
        seq.next_seq, seq.next_order_id = state.next_seq, state.next_order_id
        seq.settled_upto = state.settled_upto
        for gateway, session, ref, oid in state.live_client_ids:
            seq._client_ids[(gateway, session, ref)] = oid
            seq._by_order[oid] = (gateway, session, ref)
        seq.rules = {symbol: tuple(rules) for symbol, *rules in state.rules}
        return seq


def _reject(cmd: OrderRecord, code: ResultCode) -> Rejected:
    return Rejected(
        *(0, cmd.ts_ns, cmd.gateway, cmd.session, cmd.client_ref, cmd.account, cmd.symbol),
        *(cmd.order_id, code),
    )


def answered_again(sequencer: Sequencer, cmd: Record, seq: int) -> Record | None:
    """The OK a journaled command read again after a restart gets, when it was not told
    before: a mass cancel's acknowledgement, an account command's ``AccountReply`` (an
    order's answers come from its matcher), whose balance is the free balance now, not the
    one right after it (the commands journaled after it are applied: a live reply's too
    depends on how many of the matchers' events the router had settled)."""
    if isinstance(cmd, MassCancel):
        return mass_cancel_verdict(cmd, _OK)
    if isinstance(cmd, CreateAccount):
        return _account_reply(cmd, seq, 0, _OK, 0)
    if isinstance(cmd, Transfer):
        balance = sequencer.accounts.balance(cmd.account, cmd.asset)[0]
        return _account_reply(cmd, seq, cmd.asset, _OK, balance)
    return None


def refused_again(sequencer: Sequencer, cmd: Record) -> Record:
    """The refusal a command refused before a restart gets when it is read again and its
    reply was lost with that run (``REFUSED_BEFORE_RESTART``: its reason is not kept),
    rather than a decision on a state its gateway's later commands have changed."""
    code = ResultCode.REFUSED_BEFORE_RESTART
    if isinstance(cmd, MassCancel):
        return mass_cancel_verdict(cmd, code)
    if isinstance(cmd, Transfer):
        balance = sequencer.accounts.balance(cmd.account, cmd.asset)[0]
        return _account_reply(cmd, 0, cmd.asset, code, balance)
    if isinstance(cmd, CreateAccount):
        return _account_reply(cmd, 0, 0, code, 0)
    assert isinstance(cmd, OrderRecord), f"{type(cmd).__name__} is not refused by the router"
    return _reject(cmd, code)


def operators_only(command: Record) -> bool:
    """Whether ``command`` is the operator's alone (``ringex admin``, gateway 0): an account
    opened, a deposit or withdrawal, a halt or any admin action, every account's mass cancel.
    A trading gateway parses untrusted input: its bug must mint no money (review 343)."""
    kind = type(command)
    if kind is MassCancel:
        return command.account == 0  # type: ignore[attr-defined, no-any-return]
    return kind in OPERATORS


def not_permitted(command: Record) -> Decision:
    """The refusal of an operator's command that came on a trading gateway's ring: nothing
    sequenced or journaled, the gateway told ``NOT_PERMITTED``; an admin command, which names
    no session to tell, dropped."""
    code = ResultCode.NOT_PERMITTED
    if isinstance(command, MassCancel):
        return Decision(None, reply=mass_cancel_verdict(command, code))
    if isinstance(command, Transfer):
        return Decision(None, reply=_account_reply(command, 0, command.asset, code, 0))
    if isinstance(command, CreateAccount):
        return Decision(None, reply=_account_reply(command, 0, 0, code, 0))
    return Decision(None)


def mass_cancel_verdict(cmd: MassCancel, code: ResultCode) -> Rejected:
    """What a mass cancel's gateway is told: ``Rejected`` with ``code`` (OK: accepted)."""
    return Rejected(
        *(0, cmd.ts_ns, cmd.gateway, cmd.session, cmd.client_ref, cmd.account),
        *(cmd.symbol, 0, code),
    )


def _account_reply(
    cmd: CreateAccount | Transfer, seq: int, asset: int, code: ResultCode, balance: int
) -> AccountReply:
    return AccountReply(
        *(seq, cmd.ts_ns, cmd.gateway, cmd.session, cmd.client_ref, cmd.account, asset),
        *(code, balance),
    )


def route_all(decisions: Sequence[Decision]) -> dict[str, list[Record]]:
    """Group sequenced commands by matcher, keeping their order."""
    out: dict[str, list[Record]] = {}
    for decision in decisions:
        if decision.command is not None:
            for matcher in decision.matchers:
                out.setdefault(matcher, []).append(decision.command)
    return out
