"""The events every book makes for an order command: the shared header, a reject, a done."""

from __future__ import annotations

from procs.common.records import OrderDone, OrderRecord, Rejected
from procs.common.result_codes import ResultCode
from procs.common.types import DoneReason
from procs.core.resting import RestingOrder


def header(cmd: OrderRecord) -> tuple[int, int, int, int, int, int, int, int]:
    return (
        cmd.seq,
        cmd.ts_ns,
        cmd.gateway,
        cmd.session,
        cmd.client_ref,
        cmd.account,
        cmd.symbol,
        cmd.order_id,
    )


# The two below list the header's fields rather than unpack ``header``: a call with ``*``
# costs ~100 ns more per record, and every command makes one of these.


def reject(cmd: OrderRecord, code: ResultCode) -> Rejected:
    return Rejected(
        cmd.seq, cmd.ts_ns, cmd.gateway, cmd.session, cmd.client_ref, cmd.account,
        cmd.symbol, cmd.order_id, code,
    )  # fmt: skip


def done(cmd: OrderRecord, order: RestingOrder, reason: DoneReason) -> OrderDone:
    return OrderDone(
        cmd.seq, cmd.ts_ns, cmd.gateway, cmd.session, cmd.client_ref, cmd.account,
        cmd.symbol, cmd.order_id, reason, order.filled, order.leaves + order.reserve,
    )  # fmt: skip
