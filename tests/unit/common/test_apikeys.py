"""ApiKeyStore: validation, limits, file safety (mode, atomic shared writes) and the reload that
lets several gateway processes share one file."""

from __future__ import annotations

import itertools
import os
import stat
import string
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

from procs.common.apikeys import MAX_LABEL, ApiKey, ApiKeyStore
from procs.common.users import User

ALICE = User("ALICE", account=7, session=3, salt="00", digest="00")
BOB = User("BOB", account=8, session=4, salt="00", digest="00")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "gateway" / "apikeys.json"


def test_create_get_and_fields(path: Path) -> None:
    store = ApiKeyStore(path)
    key = store.create(ALICE, ["trade", "read", "read"], label="bot 1")
    assert len(key.key) == 32 and set(key.key) <= set(string.ascii_letters + string.digits + "-_")
    assert len(key.secret) == 64 and set(key.secret) <= set(string.hexdigits.lower())
    assert (key.comp_id, key.account, key.session) == ("ALICE", 7, 3)
    assert key.scopes == ["read", "trade"]
    assert key.label == "bot 1" and key.created_ms > 1_600_000_000_000
    assert store.get(key.key) == key
    assert store.get("nope") is None
    assert ApiKeyStore(path).get(key.key) == key  # persisted


def test_single_scope_string_is_one_scope(path: Path) -> None:
    assert ApiKeyStore(path).create(ALICE, "read").scopes == ["read"]


def test_bad_scope_names_value_and_allowed(path: Path) -> None:
    store = ApiKeyStore(path)
    with pytest.raises(ValueError, match=r"scope 'withdraw' is not one of read, trade"):
        store.create(ALICE, ["read", "withdraw"])
    with pytest.raises(ValueError, match=r"no scope given: pick from read, trade"):
        store.create(ALICE, [])
    assert not path.exists()


def test_label_limits(path: Path) -> None:
    store = ApiKeyStore(path)
    store.create(ALICE, ["read"], label="x" * MAX_LABEL)
    with pytest.raises(ValueError, match=rf"label is {MAX_LABEL + 1} characters, at most 64"):
        store.create(ALICE, ["read"], label="x" * (MAX_LABEL + 1))
    with pytest.raises(ValueError, match="unprintable characters"):
        store.create(ALICE, ["read"], label="a\nb")


def test_max_keys_per_user(path: Path) -> None:
    store = ApiKeyStore(path, max_keys_per_user=3)
    keys = [store.create(ALICE, ["read"]) for _ in range(3)]
    with pytest.raises(ValueError, match=r"user 'ALICE' has 3 API keys, the limit is 3"):
        store.create(ALICE, ["read"])
    store.create(BOB, ["read"])  # per user
    assert store.revoke(keys[0].key)
    store.create(ALICE, ["read"])
    assert len(store.keys_of("ALICE")) == 3


def test_max_keys_counts_other_processes_keys(path: Path) -> None:
    one, two = ApiKeyStore(path, max_keys_per_user=2), ApiKeyStore(path, max_keys_per_user=2)
    one.create(ALICE, ["read"])
    two.create(ALICE, ["read"])  # two re-reads under the lock: sees one's key
    with pytest.raises(ValueError, match="has 2 API keys"):
        one.create(ALICE, ["read"])


def test_file_mode_0600_and_no_temp_left(path: Path) -> None:
    store = ApiKeyStore(path)
    store.create(ALICE, ["read"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("apikeys.json.lock").stat().st_mode) == 0o600
    assert stat.S_IMODE(path.with_name("apikeys.log").stat().st_mode) == 0o600
    names = sorted(p.name for p in path.parent.iterdir())
    assert names == ["apikeys.json", "apikeys.json.lock", "apikeys.log"]


def test_leftover_temp_file_does_not_widen_mode(path: Path) -> None:
    path.parent.mkdir(parents=True)
    tmp = path.with_name("apikeys.json.tmp")
    tmp.write_bytes(b"junk")
    os.chmod(tmp, 0o644)
    ApiKeyStore(path).create(ALICE, ["read"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_shared_file_two_stores_see_each_other(path: Path) -> None:
    one, two = ApiKeyStore(path, recheck_s=0.0), ApiKeyStore(path, recheck_s=0.0)
    a = one.create(ALICE, ["read"])
    b = two.create(BOB, ["trade"])  # must not lose a: two re-reads under the lock
    assert one.get(b.key) == b and two.get(a.key) == a
    assert {k.key for k in ApiKeyStore(path).keys_of("ALICE")} == {a.key}
    assert two.revoke(a.key)
    assert one.get(a.key) is None  # revocation seen by the other process
    assert not one.revoke(a.key)


def test_get_reads_a_log_that_moved_at_once_and_a_hand_edit_every_recheck_s(
    path: Path,
) -> None:
    """``get`` looks at the log on every call (a log begun, grown or replaced is read:
    review 229); a snapshot edited by hand, the log untouched, waits for ``recheck_s``."""
    reader = ApiKeyStore(path, recheck_s=3600.0)
    writer = ApiKeyStore(path)
    key = writer.create(ALICE, ["read"])  # the log begun: read at once
    assert reader.get(key.key) == key
    assert writer.revoke(key.key)  # the log grew: read at once
    assert reader.get(key.key) is None
    other = writer.create(BOB, ["read"])
    assert reader.get(other.key) == other
    writer.compact()  # the log replaced: followed at once
    gone = writer.create(ALICE, ["trade"])
    assert writer.revoke(gone.key) and reader.get(gone.key) is None
    assert reader.get(other.key) == other


def test_changes_inside_one_clock_tick_are_seen(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revoke then a create inside one clock tick: the reader reads what the log gained,
    whatever the file's times say (the clock is frozen here: every write in one tick)."""
    frozen = time.time_ns()
    monkeypatch.setattr(time, "time_ns", lambda: frozen)
    reader = ApiKeyStore(path, recheck_s=0.0)
    writer = ApiKeyStore(path, max_keys_per_user=50)
    old = writer.create(ALICE, ["read"], label="a")
    for _ in range(20):
        assert reader.get(old.key) == old
        writer.revoke(old.key)
        new = writer.create(ALICE, ["read"], label="a")
        assert reader.get(old.key) is None
        assert reader.get(new.key) == new
        old = new


def test_revoke_user(path: Path) -> None:
    store = ApiKeyStore(path)
    for _ in range(3):
        store.create(ALICE, ["read"])
    bob = store.create(BOB, ["read", "trade"])
    assert store.revoke_user("ALICE") == 3
    assert store.revoke_user("ALICE") == 0
    assert store.keys_of("ALICE") == []
    assert ApiKeyStore(path).keys_of("BOB") == [bob]


def test_keys_of_oldest_first(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """By created_ms (ties, inside one ms, by key id: hence a clock that moves here)."""
    clock = itertools.count(time.time_ns(), 1_000_000)
    monkeypatch.setattr(time, "time_ns", lambda: next(clock))
    store = ApiKeyStore(path)
    made = [store.create(ALICE, ["read"], label=str(i)) for i in range(5)]
    assert [k.label for k in store.keys_of("ALICE")] == [k.label for k in made]


def test_deleted_file_revokes_everything(path: Path) -> None:
    store = ApiKeyStore(path, recheck_s=0.0)
    key = store.create(ALICE, ["read"])
    path.unlink()
    assert store.get(key.key) is None


def test_file_format_is_strict(path: Path) -> None:
    store = ApiKeyStore(path)
    key = store.create(ALICE, ["read"])
    store.compact()  # into the file (before a hand edit)
    raw = msgspec.json.decode(path.read_bytes())
    assert raw["keys"][0]["secret"] == key.secret  # in the clear, by design (HMAC needs it)
    raw["keys"][0]["extra"] = 1
    path.write_bytes(msgspec.json.encode(raw))
    with pytest.raises(ValueError, match=f"API keys file {path} cannot be read: .*extra"):
        ApiKeyStore(path)  # naming the file (review 138)
    assert msgspec.json.decode(msgspec.json.encode([key]), type=list[ApiKey]) == [key]


def test_concurrent_writers_lose_nothing(path: Path) -> None:
    """Writers in parallel (threads here; each store opens its own lock descriptor, so flock
    serialises them as it does processes): every key survives."""
    users = [User(f"U{i}", account=i, session=i, salt="00", digest="00") for i in range(4)]

    def make(user: User) -> list[str]:
        store = ApiKeyStore(path, max_keys_per_user=25)
        return [store.create(user, ["read"]).key for _ in range(25)]

    with ThreadPoolExecutor(len(users)) as pool:
        made = {key for keys in pool.map(make, users) for key in keys}
    assert len(made) == 100
    assert {k.key for u in users for k in ApiKeyStore(path).keys_of(u.comp_id)} == made


def test_the_file_keeps_a_crc_of_its_keys(path: Path) -> None:
    """A flipped bit that still decodes (the account a key acts for) is refused, naming the
    file (review 138); taken out, the CRC is not checked (an operator's edit); an older
    build's file, a bare list of keys, loads as it reads."""
    store = ApiKeyStore(path)
    key = store.create(ALICE, ["read"])
    store.compact()  # into the file (before a hand edit)
    raw = msgspec.json.decode(path.read_bytes())
    held = [raw["keys"], raw["generation"]]  # (a generation past 0 in the CRC too)
    assert raw["crc32"] == f"{zlib.crc32(msgspec.json.encode(held)):08x}"
    raw["keys"][0]["account"] += 1
    path.write_bytes(msgspec.json.encode(raw))
    with pytest.raises(ValueError, match=f"API keys file {path} cannot be read: its crc32"):
        ApiKeyStore(path)
    del raw["crc32"]
    path.write_bytes(msgspec.json.encode(raw))
    assert [k.account for k in ApiKeyStore(path).keys_of("ALICE")] == [key.account + 1]
    path.write_bytes(msgspec.json.encode([key]))
    assert ApiKeyStore(path).keys_of("ALICE") == [key]
