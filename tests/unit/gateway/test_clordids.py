"""The seen-ClOrdID file: what the generations keep comes back the same after a restart, the
file never holds more than the two generations, a torn last digest is cut, and the digest is
stable across processes (``hash`` of bytes is not)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from procs.gateway.clordids import SeenLog, digest
from procs.gateway.orders import _Generations


def persist(seen: _Generations, log: SeenLog) -> None:
    """What ``GatewayServer.publish`` does before each publish."""
    added, rolled = seen.take()
    if rolled:
        log.rewrite(seen.content())
    elif added:
        log.append(added)


def test_the_generations_come_back_and_the_file_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "clordids.log"
    log = SeenLog(path)
    assert len(log.load()) == 0
    seen = _Generations(3)
    for value in range(1, 12):
        seen.add(value)
        if value % 2:  # a publish every second ClOrdID
            persist(seen, log)
        assert path.stat().st_size <= 8 * 2 * 3 + 8
    persist(seen, log)
    log.close()
    again, reopened = _Generations(3), SeenLog(path)
    kept = list(reopened.load())
    reopened.close()
    for value in kept:
        again.add(value)
    assert [v in again for v in range(1, 12)] == [v in seen for v in range(1, 12)]
    assert 11 in again and 7 in again and 1 not in again
    with open(path, "ab") as f:
        f.write(b"\x01\x02\x03")  # a crash mid-write
    torn = SeenLog(path)
    assert list(torn.load()) == kept and path.stat().st_size == 8 * len(kept)
    torn.close()


def test_the_digest_is_the_same_in_another_process() -> None:
    code = "from procs.gateway.clordids import digest; print(digest(7, b'order-1'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert int(other) == digest(7, b"order-1") != digest(8, b"order-1")
