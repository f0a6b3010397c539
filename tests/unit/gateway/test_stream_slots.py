"""The private streams' per-key and per-account slots (``stream_slots.py``): locks in a
directory an instance's gateways share, so the limits hold across gateways, and a refused
or ended stream, or a dead gateway, holds none."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from procs.common.file_locks import remove_unheld, try_lock
from procs.gateway.stream_slots import StreamSlot, StreamSlots


def test_a_key_holds_its_limit_across_gateways_and_gets_a_slot_back(tmp_path: Path) -> None:
    gw1, gw2 = StreamSlots(tmp_path, 2, 10), StreamSlots(tmp_path, 2, 10)
    first, second = gw1.take("K1", 7), gw2.take("K1", 7)
    assert isinstance(first, StreamSlot) and isinstance(second, StreamSlot)
    assert gw1.take("K1", 7) == "key" and gw2.take("K1", 7) == "key"
    assert isinstance(gw1.take("K2", 7), StreamSlot)  # another key of the account
    first.release()
    first.release()  # (once)
    again = gw2.take("K1", 7)
    assert isinstance(again, StreamSlot)


def test_an_account_full_keeps_no_slot_of_the_refused_key(tmp_path: Path) -> None:
    slots = StreamSlots(tmp_path, 1, 2)
    held = [slots.take(f"K{k}", 7) for k in range(2)]
    assert all(isinstance(h, StreamSlot) for h in held)
    assert slots.take("K9", 7) == "account"
    assert isinstance(slots.take("K9", 8), StreamSlot)  # its key's slot was given back


def test_a_dead_gateway_holds_no_slot(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; "
        "from procs.gateway.stream_slots import StreamSlots; "
        f"s = StreamSlots(Path({str(tmp_path)!r}), 1, 1).take('K1', 7); "
        "print(type(s).__name__); sys.stdout.flush(); import os; os._exit(0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "StreamSlot"
    assert isinstance(StreamSlots(tmp_path, 1, 1).take("K1", 7), StreamSlot)


def test_odd_keys_name_no_odd_files(tmp_path: Path) -> None:
    slots = StreamSlots(tmp_path, 1, 1)
    assert isinstance(slots.take("../../etc/passwd\x00" + "k" * 500, 7), StreamSlot)
    assert all(p.parent == tmp_path and len(p.name) < 80 for p in tmp_path.iterdir())


def test_prune_removes_only_the_slot_files_no_stream_holds(tmp_path: Path) -> None:
    """Review 151: the files of keys gone piled up, one a login. ``prune`` removes those no
    stream holds; a held one stays, and the limit holds across a prune."""
    slots = StreamSlots(tmp_path, 1, 10)
    held = slots.take("K1", 7)
    gone = slots.take("K2", 7)
    assert isinstance(held, StreamSlot) and isinstance(gone, StreamSlot)
    gone.release()
    assert slots.prune() == 2  # K2's file and the account's second slot: nobody holds them
    assert sorted(p.name.split("-")[0] for p in tmp_path.glob("*.lock")) == ["account", "key"]
    assert slots.take("K1", 7) == "key"  # K1's one slot is still held
    held.release()
    assert slots.prune() == 2 and not list(tmp_path.glob("*.lock"))


def test_a_lock_taken_on_a_file_removed_meanwhile_is_taken_again_on_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``try_lock`` holds only the file its path names: a file another process removed
    (``remove_unheld``) between this open and this lock is let go and the path opened again,
    so two holders never hold one name on two files."""
    path = tmp_path / "claim.lock"
    locked: list[int] = []
    real = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        locked.append(fd)
        if len(locked) == 1:  # another process's remove_unheld, between the open and the lock
            assert remove_unheld(path) and not path.exists()
        real(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    fd = try_lock(path)
    assert fd is not None and len(locked) == 3  # the first file, remove_unheld's, the new one
    assert os.path.samestat(os.fstat(fd), os.stat(path))
    monkeypatch.undo()
    assert try_lock(path) is None and not remove_unheld(path)  # held: it stays
    os.close(fd)
