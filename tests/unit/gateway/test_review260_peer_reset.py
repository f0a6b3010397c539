"""Review 260: a FIX client that resets its connection (RST) while reports wait for it.

Reviewed: ``procs/gateway/connection.py`` (``connection_lost``, ``abort``, the write path's
marks), ``procs/gateway/store.py`` (``park_again``, ``connection_ended``). Rig: review
204's (``harness.py``'s in-process exchange, both socket buffers 4 KiB, so that most of
400 New reports wait in the gateway's own transport buffer when the client resets).

Fault found (fixed; its test says what it was):

1. ``procs/gateway/connection.py`` ``connection_lost``: a connection lost to an error (the
   peer's RST, a broken pipe) only forgot its mark (``store.connection_ended``); what its
   transport buffer held, which asyncio drops at the error and so never reached the kernel,
   was counted as sent. A logon that keeps the numbers fetches it by ResendRequest, but one
   with ResetSeqNumFlag (141=Y) carried none of it. Fix: parked again, as ``abort`` parks,
   from the oldest mark not known to be handed on (a few the kernel took just before may
   come twice, their ExecIDs the same: as after a kill, review 252).
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

from tests.unit.gateway.harness import Client, Harness, run_scenario, settled
from tests.unit.gateway.test_review204_stop_output import (
    LIMIT_S,
    N,
    _acked,
    _drain,
    _exchange,
    _full_buffers,
    _gw,
)

#: What the kernel's buffers on both sides may hold of the reports (about 250 bytes each)
#: when the client resets: handed on, so counted as sent (README: a documented limit).
KERNEL_HELD = 120


def test_reports_cut_off_by_the_peers_reset_are_carried_to_a_reset_logon(
    instance: str, tmp_path: Path
) -> None:
    """Scenario: ALICE has 400 orders accepted while she reads nothing (most of their New
    reports wait in the gateway's transport buffer); her connection is reset (SO_LINGER 0,
    an RST); she logs on again with ResetSeqNumFlag.
    Expected: the reports the gateway never handed to the kernel are carried after her
    Logon (those the kernel held, at most a few dozen, are lost with her socket).
    Was (fixed): none was carried: over 300 accepted orders' New reports never seen."""
    h = _exchange(instance, tmp_path)

    async def scenario(h: Harness, port: int) -> None:
        gw = _gw(h)
        alice = await _full_buffers(h, port)
        assert alice.writer is not None
        sock = alice.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        alice.writer.transport.abort()  # an RST: what her socket held is dropped
        await settled(lambda: not gw.connections, 30)
        assert not gw.connections, "the gateway did not see the reset"
        again = Client("ALICE")
        await again.connect(port)
        await again.logon(reset=True)
        carried = _acked(await _drain(again))
        missing = {f"o{k}".encode() for k in range(N)} - carried
        assert len(missing) <= KERNEL_HELD, f"{len(missing)} New reports never carried"

    run_scenario(h, scenario, LIMIT_S)
