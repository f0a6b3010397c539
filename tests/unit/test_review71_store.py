"""A hostile review (the 71st) of commit 44c69a8: the FIX session store's trim
(``procs/gateway/store.py`` ``MessageStore._trim``, ``max_bytes``, ``[[gateways]]
store_max_mb`` in ``config/edges.py``, given by ``server.py`` ``store()``) and the audit log's
reopen after a rotation (``procs/gateway/audit.py`` ``_reopen_if_moved``).

What holds (the first tests pin it): past ``max_bytes`` the store keeps its newest half from
an indexed block; the sparse index's offsets are shifted with it, a lookup before the first
kept block starts at the file's head, and ``_since``/``_last`` carry on; a restart (``_load``)
indexes the cut file and keeps ``next_out``; a reset after a trim truncates the renamed file
(the handle reopened on it), and a crash between the copy and the rename leaves the old file
whole (``messages.new`` is only truncated and reused by the next trim). ``outbound`` opens
``messages`` by path at each call, so no reader holds the replaced file. Over TCP, a
ResendRequest spanning the cut is answered from its BeginSeqNo with GapFills (one a
``RESEND_CHUNK`` of what was cut: valid, if wordy) chained into the kept messages, those
resent as they were sent, PossDup with their first SendingTime, MsgSeqNums in step. Once
parked messages hold the store above ``max_bytes``, a flush's ``_trim`` is two bisects and a
return: no copy. The config's floor (1 MiB) keeps ``max_bytes`` above a block of 256
messages of the gateway's sizes. The audit log's reopen keeps mode 0600 (``fchmod``), writes
a newline after a torn last line of the file it reopens, and costs one ``stat`` a flush
(~1 us against the flush's write).

Faults, each found on the code reviewed. The trim's (1 to 4) were fixed, then review 72
found its fixes' mark of what was never sent full of holes, and the trim was withdrawn
(the store grows until its session resets its numbers: README, Disk): their tests went with
it. The fifth's test below failed on the code reviewed and passes since its fix (the audit
log kept on its old file when a reopen fails):

1. A logon that keeps the numbers clears ``parked_from`` (``store.py`` ``logged_on``) before
   the client has fetched what was parked: the flush after the Logon's answer trims the
   never-seen reports, and the client's ResendRequest gets a GapFill over them.
2. A logon that resets the numbers stores the parked reports anew (``session.py``
   ``_finish_logon``) under no protection (``parked_from`` is 0 after ``reset``), to be sent
   chunk by chunk from the store: the first ``outbound`` flush trims them, and they go out as
   a GapFill, never sent.
3. A trim that fails (ENOSPC while copying: the full disk the trim exists for) raises out of
   ``flush`` (``store.py`` ``_trim``, from ``flush``): the poll task ends, so the gateway
   stops; ``messages.new`` is left half written and that flush's sequence numbers unsaved.
4. A trim copies half the store (32 MiB at the default) and fsyncs it in one ``flush``, on
   the gateway's loop: ~120 ms a trim here, every few seconds at load, for every session;
   the order log's compaction goes in steps of "about 2 ms of a gateway's loop".
5. ``audit.log`` replaced by a directory (or any path ``open`` refuses): ``_reopen_if_moved``
   closes the working file, then ``_open`` raises out of ``flush``: the gateway stops
   (its poll or timer task ends), and every later flush fails the same way.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from procs.gateway.audit import AuditLog

# -- what holds ---------------------------------------------------------------------------------


# -- faults -------------------------------------------------------------------------------------


def test_an_audit_reopen_that_fails_does_not_stop_the_gateway(tmp_path: Path) -> None:
    """An operator's rotation goes wrong: ``audit.log`` is renamed and a directory (or a
    file the gateway may not open, or a path on a full inode table) takes its name. The next
    ``flush`` sees another inode, closes the file it was writing, and ``_open`` raises
    ``IsADirectoryError`` out of ``flush``: from ``Session.take_output`` or the poll pass,
    the poll task ends and the gateway stops (``server.run``: "shutting down"); the lines of
    that flush are in no file, and every later flush raises again (the closed file is never
    written). Before the reopen, the same gateway went on writing the renamed file.

    A correct log tells (an error logged once) and goes on writing the file it has open,
    trying the path again at later flushes; the exchange does not stop for its audit log's
    name."""
    path = tmp_path / "gw" / "audit.log"
    audit = AuditLog(path)
    try:
        audit.record(1, True, "ALICE", b"8=FIX.4.4\x0135=0\x01")
        audit.flush()
        path.rename(path.with_name("audit.log.1"))
        path.mkdir()
        audit.record(2, True, "ALICE", b"8=FIX.4.4\x0135=1\x01")
        audit.flush()
        audit.record(3, True, "ALICE", b"8=FIX.4.4\x0135=2\x01")
        audit.flush()
        lines = path.with_name("audit.log.1").read_bytes().splitlines()
        assert [line.split(b" ")[0] for line in lines] == [b"1", b"2", b"3"]
    finally:
        with contextlib.suppress(OSError):
            audit.close()
