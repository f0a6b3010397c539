"""The user store's password check."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import pytest

from procs.common import users
from procs.common.users import User, UsersFileError, UserStore, users_crc


def test_an_unknown_user_costs_the_same_hash_as_a_wrong_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Else the answer's timing tells which user names exist."""
    store = UserStore(tmp_path / "users.json")
    store.add("ALICE", "secret", 7, n=1 << 4)
    calls: list[int] = []
    digest = users._digest

    def counted(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        calls.append(n)
        return digest(password, salt, n, r, p)

    monkeypatch.setattr(users, "_digest", counted)
    assert store.verify("ALICE", "wrong") is None
    assert store.verify("MALLORY", "wrong") is None
    assert len(calls) == 2 and calls[1] == users.DEFAULT_N
    assert store.verify("ALICE", "secret") is not None


def test_the_file_is_the_owners_alone_and_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Salts and digests, as apikeys.json: mode 0600 whatever the umask; and fsynced before
    the rename, so a power loss cannot leave an empty file in place of the users."""
    path = tmp_path / "users.json"
    path.write_text("[]")
    path.chmod(0o644)  # an older gateway's file
    synced: list[int] = []
    fsync = os.fsync

    def counted(fd: int) -> None:
        synced.append(fd)
        fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)
    UserStore(path).add("ALICE", "secret", 7, n=1 << 4)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(synced) >= 2  # the log, then its directory
    assert UserStore(path).get("ALICE") is not None


def test_the_file_keeps_a_crc_of_its_users(tmp_path: Path) -> None:
    """A flipped account digit is refused, naming the file (review 138); taken out, the CRC
    is not checked (an operator's edit); an older build's bare list of users loads."""
    path = tmp_path / "users.json"
    store = UserStore(path)
    store.add("ALICE", "secret", 7, n=2)
    store.compact()  # into the file (before a hand edit)
    raw = msgspec.json.decode(path.read_bytes())
    held = users_crc([User(**raw["users"][0])], raw["last_session"], raw["generation"])
    assert raw["crc32"] == held
    raw["users"][0]["account"] = 3
    path.write_bytes(msgspec.json.encode(raw))
    with pytest.raises(UsersFileError, match=f"users file {path} cannot be read: its crc32"):
        UserStore(path)
    del raw["crc32"]
    path.write_bytes(msgspec.json.encode(raw))
    alice = UserStore(path).get("ALICE")
    assert alice is not None and alice.account == 3
    path.write_bytes(msgspec.json.encode(raw["users"]))
    assert UserStore(path).get("ALICE") == alice
