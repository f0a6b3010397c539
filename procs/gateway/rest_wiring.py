"""The REST API's core (``RestOrders``) wired to the FIX order entry of the same gateway: one
namespace of client order ids per account (review 47), the FIX orders in the API's views, and
the windows of ids used, each its own (the API's in ``api_ids.log``, review 73; the ids an
older build kept in the FIX window, ``clordids.log``, are still asked)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from config.edges import GatewayConfig
from config.schema import RingexConfig
from procs.common.users import User, UserStore
from procs.gateway.clordids import API_IDS_KEPT, Generations, SeenLog, api_digest
from procs.gateway.order_state import Order
from procs.gateway.orders import OrderEntry
from procs.gateway.rest_orders import RestOrders

if TYPE_CHECKING:  # the HTTP stack is imported only by a REST gateway (``server.py``)
    from procs.gateway.rest import RestApi


class RestWiring:
    """``GatewayServer``'s part that makes its REST API."""

    if TYPE_CHECKING:
        entry: OrderEntry
        users: UserStore
        api_seen_log: SeenLog
        _api_orders: dict[int, list[Any]]

        def submit(self) -> None: ...
        def _user_of(self, session_id: int) -> User | None: ...

    def _rest_api(self, cfg: RingexConfig, gw: GatewayConfig) -> RestApi | None:
        """The REST API where the gateway serves one: its core wired to the FIX order
        entry's orders, and restored from the order log."""
        if gw.rest is None:
            return None
        from procs.gateway.rest import RestApi  # noqa: PLC0415  (see the imports)

        entry = self.entry
        core = RestOrders(gw.id, entry.instruments, cfg.assets, entry.outgoing, entry.next_ref)
        core.fix_orders = lambda s: [o for o in entry.orders.values() if o.session == s]
        core.fix_order = self._fix_order
        core.fix_pending = lambda i: (
            (o := entry.by_id.get(i)) is not None and bool(entry.pending_of(o))
        )
        core.seen = Generations(API_IDS_KEPT // 2)  # the ids used here, a window of their own
        core.seen.restore(self.api_seen_log.load())
        core.fix_live = lambda a, c: entry.holding(a, c.encode("latin-1"))
        core.legacy_used = lambda a, c: api_digest(a, c) in entry.seen
        entry.account_of = lambda s: None if (u := self._user_of(s)) is None else u.account
        # one id, one open order of the account, whichever way it came (review 47)
        entry.api_holds = lambda a, c: (a, c.decode("latin-1")) in core.client_ids
        core.restore(self._api_orders)
        return RestApi(cfg, gw, gw.rest, core, self.users, self.submit)

    def _fix_order(self, order_id: int, ref: int) -> Order | None:
        """A FIX order of this gateway for the API's views: live by its id, or finished by
        its command's ref (it ended in the batch that accepted it, which FIX took first) or
        by its id (a Replaced names the replace's ref: review 253)."""
        entry = self.entry
        order = entry.by_id.get(order_id)
        if order is None:
            finished = entry.finished_orders.get(entry.finished_ids.get(order_id, ref))
            order = finished[0] if finished and finished[0].order_id == order_id else None
        return order
