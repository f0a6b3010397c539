"""Review 107: README.md's "## The rings" held to the code mechanically: every record type
it names is the code's and every one the code defines is named, every number it states is the
code's constant (quoted by name), and every behaviour it states that a ring of a test's own can
show is shown: its example runs, a full ring refuses ``try_publish``, a second create and a
build of other records are refused, weak memory models are refused.

Convention (as review 104's, shared helpers in ``readme_core_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly, rather than being checked no longer. A claim checked
and found right is a plain test; a disagreement is a strict xfail. Nothing here starts a
process; the ring tests create (and unlink) shared-memory segments of an instance of their own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.schema import WaitConfig
from procs.common.record_codec import EARLIER_SLOT_SIZES, SLOT_FRAMING, RecordCodec
from procs.common.record_layout import max_encoded_size
from procs.common.records import RECORD_TYPES, Heartbeat
from shm import header as shm_header
from shm import health, wait
from shm.errors import HeaderMismatchError, RingError, ShmError
from shm.ring import ConsumerSpec, Ring
from tests.unit.readme_core_claims import CODEC, RINGS, _claim, _folded

# -- the rings --------------------------------------------------------------------------------


def test_records_named_are_the_record_set() -> None:
    """README "## The rings", Records: the record types it lists, by group, are exactly
    ``RECORD_TYPES`` (procs/common/records.py), none missing and none extra."""
    _claim(
        "(commands NewOrder, CancelOrder, ReplaceOrder, MassCancel, AdminCommand; journaled "
        "state FeeSchedule, SymbolRules; events Accepted, Rejected, Trade, OrderDone, Replaced, "
        "BookLevel, Triggered, SymbolStatus; accounts CreateAccount, Transfer, AccountReply, "
        "WatchBalances, Balance; and Heartbeat)"
    )
    text = _folded(RINGS)
    start = text.index("(commands NewOrder")
    listing = text[start : text.index("Heartbeat)", start) + len("Heartbeat")]
    listed = set(re.findall(r"\b([A-Z][A-Za-z]+)\b", listing))
    assert listed == {t.__name__ for t in RECORD_TYPES}


def test_slot_is_152_bytes_and_was_128() -> None:
    """README "## The rings": "stored as length-prefixed MessagePack in 152-byte slots (128
    before the client ids of 2026-11-27)"; "## The router and the journal": "``NewOrder``, 142
    of its 152 bytes with its framing today; ``Trade``'s 128 before it carried a client id".
    record_codec.py: ``SLOT_FRAMING`` (2-byte length + 8-byte stamp) = 10,
    ``EARLIER_SLOT_SIZES = (128,)``; the largest record is ``NewOrder`` at 142."""
    _claim("stored as length-prefixed MessagePack in 152-byte slots (128 before the client ids")
    _claim("(`NewOrder`, 142 of its 152 bytes with its framing today; `Trade`'s 128 before")
    assert CODEC.slot_size == 152
    assert EARLIER_SLOT_SIZES == (128,)
    sizes = {t.__name__: max_encoded_size(t) for t in RECORD_TYPES}
    assert max(sizes, key=sizes.__getitem__) == "NewOrder"
    assert sizes["NewOrder"] + SLOT_FRAMING == 152
    # without its client id (36 bytes and a 1-byte header) NewOrder fits 128 under Trade
    assert sizes["NewOrder"] - 37 < sizes["Trade"]
    assert -(-(sizes["Trade"] + SLOT_FRAMING) // 8) * 8 == 128


def test_stamp_is_8_bytes_and_slot_is_a_mask() -> None:
    """README "## The rings": "writes record `n` into slot `n & (capacity - 1)`" of a
    "`capacity` (a power of two)" and "Every slot also ends in an 8-byte seqlock stamp".
    shm/header.py: ``STAMP_SIZE = 8``; ``Geometry.validate`` refuses a capacity that is not a
    power of two."""
    _claim("`capacity` (a power of two) fixed-size slots")
    _claim("Every slot also ends in an 8-byte seqlock stamp")
    assert shm_header.STAMP_SIZE == 8
    with pytest.raises(ValueError, match="not a power of two"):
        shm_header.Geometry(152, 1000, 1, 4).validate()
    shm_header.Geometry(152, 1024, 1, 4).validate()


@pytest.fixture
def instance() -> Iterator[str]:
    """An instance of this test's own, its segments removed after it."""
    name = f"r107t{os.getpid()}"
    yield name
    for path in Path("/dev/shm").glob(f"*{name}*"):
        path.unlink(missing_ok=True)


def test_readme_ring_example_runs(instance: str) -> None:
    """README "## The rings": the ```python example runs as written (on an instance of its
    own, not ``demo``): a Heartbeat published is taken by ``sink``."""
    block = re.search(r"```python\n(from shm import Ring.*?)```", RINGS, re.S)
    assert block is not None, "the README's ring example is gone"
    source = block[1].replace('"demo"', repr(instance)).replace("print(", "got.append(")
    got: list[object] = []
    exec(compile(source, "README.md", "exec"), {"got": got})
    [batch] = got
    assert [type(r).__name__ for r in batch] == ["Heartbeat"]  # type: ignore[attr-defined]


def test_ring_full_try_publish_false_and_segment_exists(instance: str) -> None:
    """README "## The rings": "`publish` waits, `try_publish` returns `False`" on a slot an
    active consumer has not consumed; "a second `Ring.create` of the same instance and name
    is refused (`segment ... already exists`)"; a ring's header holds the record set's schema
    id, "so a process built with other records fails on attach"."""
    _claim("`publish` waits, `try_publish` returns `False`")
    _claim("is refused (`segment ... already exists`)")
    _claim("so a process built with other records fails on attach")
    ring = Ring.create(instance, "full", CODEC, capacity=4, consumers=["c"])
    try:
        producer = ring.producer(wait.wait_strategy("busy-spin"))
        beat = Heartbeat(ts_ns=1, source=1, counter=0)
        assert all(producer.try_publish(beat) for _ in range(4))
        assert producer.try_publish(beat) is False  # "c" has read none of the four
        with pytest.raises(ShmError, match="already exists"):
            Ring.create(instance, "full", CODEC, capacity=4, consumers=["c"])
        with pytest.raises(HeaderMismatchError, match="schema_id"):
            Ring.attach(instance, "full", RecordCodec([Heartbeat], slot_size=152))
        producer.close()
    finally:
        ring.unlink()
        ring.close()


def test_ring_refuses_weak_memory(monkeypatch: pytest.MonkeyPatch, instance: str) -> None:
    """README "## The rings": "on ARM or POWER ... `Ring` refuses to run there unless
    `RINGEX_ALLOW_WEAK_MEMORY=1`" (shm/ring.py ``_check_memory_model``)."""
    _claim("so `Ring` refuses to run there unless `RINGEX_ALLOW_WEAK_MEMORY=1`")
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    monkeypatch.delenv("RINGEX_ALLOW_WEAK_MEMORY", raising=False)
    with pytest.raises(RingError, match="RINGEX_ALLOW_WEAK_MEMORY=1"):
        Ring.create(instance, "arm", CODEC, capacity=4)
    assert not list(Path("/dev/shm").glob(f"*{instance}*"))  # nothing left behind


def test_gated_consumer_spec() -> None:
    """README "## The rings": "`ConsumerSpec("matcher", gates=("journal",))`" is the spec's
    own signature (shm/ring.py)."""
    _claim('(`ConsumerSpec("matcher", gates=("journal",))`)')
    spec = ConsumerSpec("matcher", gates=("journal",))
    assert (spec.name, spec.gates) == ("matcher", ("journal",))


def test_wait_strategies_and_blocking_parks_at_once() -> None:
    """README "## The rings", Wait strategies: `busy-spin`, `yield`, `sleep`, `blocking`, the
    four ``wait_strategy`` knows; blocking "parks at once unless `wait.spins` says otherwise"
    (config/schema.py ``DEFAULT_SPINS["blocking"] = 0``); the watched FIFO is
    ``/dev/shm/fifo.<name>`` (shm/wait.py ``fifo_path``)."""
    _claim("`busy-spin` (lowest latency, a core at 100%), `yield`, `sleep` (spin, yield, then")
    _claim("it parks at once unless `wait.spins` says otherwise")
    _claim("(`/dev/shm/fifo.<name>`)")
    assert set(wait._STRATEGIES) == {"busy-spin", "yield", "sleep", "blocking"}
    built = WaitConfig(strategy="blocking").build()
    assert isinstance(built, wait.Blocking) and built.spins == 0
    assert wait.fifo_path("/x") == "/dev/shm/fifo.x"


def test_health_verdicts() -> None:
    """README "## The rings", Liveness: ``shm.health.classify`` gives "(idle, working,
    waiting, stuck, dead, unattached, detached)": exactly ``Health``'s values."""
    _claim("(idle, working, waiting, stuck, dead, unattached, detached)")
    assert {h.value for h in health.Health} == {
        "idle", "working", "waiting", "stuck", "dead", "unattached", "detached",
    }  # fmt: skip
