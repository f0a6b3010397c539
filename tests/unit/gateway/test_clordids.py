"""The seen-ClOrdID file: what the generations keep comes back the same after a restart, the
file never holds more than the two generations, a torn last digest is cut, and the digest is
stable across processes (``hash`` of bytes is not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procs.gateway.clordids import MAGIC, Generations, SeenLog, digest


def test_the_generations_come_back_and_the_file_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "clordids.log"
    log = SeenLog(path)
    assert len(log.load()) == 0
    seen = Generations(3)
    for value in range(1, 12):
        seen.add(value)
        if value % 2:  # a publish every second ClOrdID
            log.keep(seen)
        assert path.stat().st_size <= len(MAGIC) + 2 * 3 * (8 + 8)  # a frame's header a write
    log.keep(seen)
    log.close()
    again, reopened = Generations(3), SeenLog(path)
    kept = reopened.load()
    reopened.close()
    again.restore(kept)
    assert [v in again for v in range(1, 12)] == [v in seen for v in range(1, 12)]
    assert 11 in again and 7 in again and 1 not in again
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x01\x02\x03")  # a crash mid-write
    torn = SeenLog(path)
    assert list(torn.load()) == list(kept) and path.stat().st_size == size
    torn.close()


def test_the_digest_is_the_same_in_another_process() -> None:
    code = "from procs.gateway.clordids import digest; print(digest(7, b'order-1'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert int(other) == digest(7, b"order-1") != digest(8, b"order-1")
