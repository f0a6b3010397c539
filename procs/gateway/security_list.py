"""FIX 4.4 SecurityListRequest (x) -> SecurityList (y): the symbols a session may trade and
the steps its orders must keep, from the gateway's config, so a FIX client learns them over
its own session (the REST API's ``exchangeInfo`` says the same).

SecurityListRequestType (559): 0, one symbol (Symbol, 55, names it: without it the request
is refused by a BusinessMessageReject, 380=5, conditionally required field missing); 4,
every symbol, in the config's order. 1, 2 and 3 (by security type, product, trading
session) are answered SecurityRequestResult (560) 1, invalid or unsupported request; an
unknown symbol 2, no instruments found (FIX 4.4's SecurityList has no Text outside its
entries: the result code is the answer). SubscriptionRequestType (263) 0 (a snapshot, the
default) and 1 (and updates) are answered alike: the list changes only with the config, so
with a restart, after which a client logs on again; 2 (stop the updates) is 1, there being
none to stop.

An entry (NoRelatedSym, 146) holds Symbol (55), MinPriceIncrement (969: the tick, a FIX 5.0
field that FIX 4.4 venues add to their dictionaries, as a client validating against the
stock FIX44.xml must too), Currency (15: the quote asset, which prices and notionals are
in), RoundLot (561: the lot, the step of a quantity) and MinTradeVol (562: the least
quantity an order may have, a multiple of the lot), each a decimal as orders write them. A
list of more than ``FRAGMENT`` symbols goes in fragments (TotNoRelatedSym, 393, the whole
count; LastFragment, 893, Y on the last), each small enough for any client's message limit.
An answer is a read of the config: a PossDup or PossResend copy is answered again.
"""

from __future__ import annotations

from typing import Final

from config.schema import SymbolConfig
from procs.gateway.fix import FixMessage, field
from procs.gateway.instruments import Instruments, format_units
from procs.gateway.session import Session

#: The most symbols one SecurityList carries (a longer list goes in fragments).
FRAGMENT: Final = 100
#: SecurityRequestResult (560), FIX 4.4.
VALID: Final = 0
UNSUPPORTED: Final = 1
NOT_FOUND: Final = 2


def answers(msg: FixMessage, instruments: Instruments, response_id: bytes) -> list[bytes] | str:
    """The bodies of the SecurityLists (y) that answer the request ``msg``, in order (one, or
    the fragments of a long list), or the text of the BusinessMessageReject that refuses it.
    ``response_id``: the SecurityResponseID (322) of this answer."""
    kind, subscription = msg.get(559) or b"", msg.get(263) or b"0"
    if subscription == b"2" or kind not in (b"0", b"4"):
        return [_head(msg, response_id, UNSUPPORTED)]
    if kind == b"4":
        symbols = list(instruments.by_name.values())
    elif not (name := msg.get(55)):
        return "SecurityListRequestType 0 (symbol) needs Symbol (55)"
    elif (found := instruments.by_name.get(name)) is None:
        return [_head(msg, response_id, NOT_FOUND)]
    else:
        symbols = [found]
    parts = [symbols[i : i + FRAGMENT] for i in range(0, len(symbols), FRAGMENT)] or [[]]
    return [
        _head(msg, response_id, VALID)
        + field(393, len(symbols))
        + field(893, b"Y" if n == len(parts) - 1 else b"N")
        + field(146, len(part))
        + b"".join(map(_entry, part))
        for n, part in enumerate(parts)
    ]


def _head(msg: FixMessage, response_id: bytes, result: int) -> bytes:
    return field(320, msg.get(320) or b"") + field(322, response_id) + field(560, result)


def _entry(s: SymbolConfig) -> bytes:
    return (
        field(55, s.name)
        + field(969, format_units(s.tick, s.price_decimals))
        + field(15, s.quote)
        + field(561, format_units(s.lot, s.qty_decimals))
        + field(562, format_units(s.least_qty, s.qty_decimals))
    )


def answer(
    session: Session, msg: FixMessage, instruments: Instruments, response_id: bytes, now_ns: int
) -> None:
    """Sends ``session`` the answer to its SecurityListRequest ``msg``."""
    out = answers(msg, instruments, response_id)
    if isinstance(out, str):
        session.business_reject(msg, 5, out, now_ns)  # conditionally required field missing
        return
    for body in out:
        session.send(b"y", body, now_ns)
