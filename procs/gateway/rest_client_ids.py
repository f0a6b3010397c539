"""Which order a client names by its ids: the open one under a client order id, the newest
finished one, whether an id was used here, and the refusal of one not known (``unknown``).
A client order id is unique among an account's open orders only (review 144: an id may
name an open order on another symbol and a finished one on this).

A mixin of ``RestOrders`` (``rest_orders.py``), which owns the state it names.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from procs.gateway.api_errors import ApiError
from procs.gateway.clordids import Generations, api_digest
from procs.gateway.grouped import GroupedDict
from procs.gateway.order_state import Order
from procs.gateway.rest_order_state import LiveOrder, from_fix
from procs.gateway.rest_params import forgotten, not_found


class RestClientIds:
    live: GroupedDict[int, LiveOrder, int]
    client_ids: dict[tuple[int, str], LiveOrder]
    done: OrderedDict[int, LiveOrder]
    seen: Generations | None
    legacy_used: Callable[[int, str], bool]
    fix_live: Callable[[int, str], Order | None]

    def in_use(self, account: int, client_id: str) -> LiveOrder | None:
        """The unfinished order of ``account`` known here as ``client_id``: placed through
        the API, followed under it, or a FIX order of a session of the account on this
        gateway by its ClOrdID, acknowledged or not, or the one a replace in flight gives it
        (reviews 47 and 49). A new order under it would make ``origClientOrderId``
        ambiguous."""
        if not client_id:
            return None
        found = self._open_by_client_id(account, client_id)
        if found is None and (fix := self.fix_live(account, client_id)) is not None:
            found = from_fix(fix, account)
        return found

    def _open_by_client_id(self, account: int, client_id: str) -> LiveOrder | None:
        """An open order of ``account`` this core knows as ``client_id``: placed through the
        API, or followed (at most the account's open orders: the risk limit bounds them)."""
        found = self.client_ids.get((account, client_id))
        if found is None:
            found = next((o for o in self.live.of(account) if o.client_order_id == client_id), None)
        return found

    def order(
        self, account: int, order_id: int | None, client_id: str = "", symbol: int = 0
    ) -> LiveOrder | None:
        """An order of ``account`` known here (open, or finished recently); never another's.
        By ``client_id``: the open one, else the newest finished, on ``symbol`` (0: any). A
        client order id is unique among open orders only, so one may name an open order on
        another symbol and a finished one on this (review 144)."""
        if order_id is not None:
            found = self.live.get(order_id) or self.done.get(order_id)
            return found if found is not None and found.account == account else None
        found = self._open_by_client_id(account, client_id)
        if found is not None and (not symbol or found.symbol.id == symbol):
            return found
        for o in reversed(self.done.values()):  # at most ``keep_done``
            if (
                o.account == account
                and o.client_order_id == client_id
                and (not symbol or o.symbol.id == symbol)
            ):
                return o
        return None

    def used(self, account: int, client_id: str) -> bool:
        """Whether ``account`` placed an order here under ``client_id`` that the exchange
        took (lately: ``seen``, or the FIX window where an older build kept the API's ids)."""
        return self.seen is not None and (
            api_digest(account, client_id) in self.seen or self.legacy_used(account, client_id)
        )

    def unknown(self, account: int, client_id: str, symbol: str = "") -> ApiError:
        """No order here under ``client_id`` on ``symbol``: "does not exist" on it for one
        known here on another symbol (review 74; review 144 looks an id up on the request's
        symbol), "status unknown here" for one the exchange took (forgotten since), "does not
        exist" for one never used (review 70)."""
        if symbol and self.order(account, None, client_id) is not None:
            return not_found(f"origClientOrderId={client_id} (symbol={symbol})")
        if self.used(account, client_id):
            return forgotten(client_id)
        return not_found(f"origClientOrderId={client_id}")

    def note_used(self, account: int, client_id: str) -> None:
        """``client_id`` named an order the exchange took: kept in ``seen``, once (an id
        used again is not added again: ``api_ids.log`` grows only with new ones)."""
        if self.seen is not None and (value := api_digest(account, client_id)) not in self.seen:
            self.seen.add(value)
