"""The raw FIX audit journal: every inbound and outbound message, as it was on the wire.

One line per message, ``<ts_ns> <in|out> <comp id> <message with SOH shown as |>``, appended
to ``audit.log`` in the gateway's directory. Lines are buffered and written when the shell
calls ``flush`` (once per loop pass), so auditing costs a ``write`` per pass, not per message.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


class AuditLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file: BinaryIO = path.open("ab")
        self._lines: list[bytes] = []

    def record(self, ts_ns: int, inbound: bool, comp_id: str, raw: bytes) -> None:
        self._lines.append(
            b"%d %s %s %s\n"
            % (ts_ns, b"in" if inbound else b"out", comp_id.encode(), raw.replace(b"\x01", b"|"))
        )

    def flush(self) -> None:
        if self._lines:
            self._file.write(b"".join(self._lines))
            self._lines.clear()
            self._file.flush()

    def close(self) -> None:
        self.flush()
        self._file.close()
