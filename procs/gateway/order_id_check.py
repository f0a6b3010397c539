"""Whether a cancel's or replace's OrderID (37) is the order its OrigClOrdID (41) names.

FIX 4.4's OrderID is the exchange's own id of the order. A client that sends it with an
OrigClOrdID means one order, so two that disagree say its view of its orders is wrong: the
request is refused as for an unknown order, not acted on for either of them, as ringex refuses
any field it would otherwise drop in silence (review 329). OrderID is optional, and a client
that never got an id for the order may send NONE, as ringex's own reports do then.
"""

from __future__ import annotations

from typing import Final

from procs.gateway.fix import FixMessage, shown

#: An OrderID as sent for an order of no id yet (ringex's reports say so before the ack):
#: as if absent.
NO_ORDER_ID: Final = b"NONE"


def other_order_id(msg: FixMessage, order_id: int) -> str | None:
    """The refusal's text when ``msg`` (an F or a G) carries an OrderID (37) that is not
    ``order_id``, the id of the order its OrigClOrdID names, as ringex's reports write it
    (its decimal, no sign or leading zero); None when 37 is that, absent or NONE."""
    sent = msg.fields.get(37)
    if sent is None or sent == NO_ORDER_ID or sent == b"%d" % order_id:
        return None
    orig = shown(msg.fields[41])
    return f"unknown order: OrderID {shown(sent)} is not OrigClOrdID {orig}'s, {order_id}"
