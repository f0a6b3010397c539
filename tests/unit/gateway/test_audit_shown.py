"""``audit.shown`` against the readable definition of an audit line's message, over any bytes:
secrets masked, the four unsafe bytes escaped, SOH shown as ``|``, so a line is always one
message whatever its values hold; and ``AuditLog``'s file, written a pass at a time, against
one ``shown`` line per message."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from procs.gateway.audit import AuditLog, shown

_ESCAPED = {0x5C: b"\\\\", 0x7C: b"\\|", 0x0D: b"\\r", 0x0A: b"\\n", 0x01: b"|"}
_SECRET = re.compile(rb"(?:^|(?<=\x01))(554|925)=[^\x01]*")


def reference(raw: bytes) -> bytes:
    masked = _SECRET.sub(rb"\1=***", raw)
    return b"".join(_ESCAPED.get(b, bytes((b,))) for b in masked)


# bytes drawn mostly from the ones that matter, so that fields, secrets and escapes meet
_pieces = st.sampled_from(
    [b"\x01", b"=", b"|", b"\\", b"\r", b"\n", b"554=", b"925=", b"55=", b"x", b"1", b"\x00"]
)


@given(st.lists(_pieces | st.binary(max_size=4), max_size=40).map(b"".join))
def test_shown_is_the_reference_for_any_bytes(raw: bytes) -> None:
    line = shown(raw)
    assert line == reference(raw)
    assert b"\n" not in line and b"\r" not in line and b"\x01" not in line


def test_a_plain_message_is_its_bytes_with_soh_as_bar() -> None:
    raw = b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01"
    assert shown(raw) == b"8=FIX.4.4|9=5|35=0|10=000|"
    assert shown(b"35=A\x01554=hunter2\x01") == b"35=A|554=***|"
    assert shown(b"58=a|b\\c\r\n\x01") == b"58=a\\|b\\\\c\\r\\n|"


@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from(["CLIENT1", "odd|id\n"]),
            st.lists(_pieces | st.binary(max_size=4), max_size=12).map(b"".join),
        ),
        max_size=8,
    )
)
def test_a_pass_is_written_as_one_shown_line_a_message(
    passes: list[tuple[bool, str, bytes]],
) -> None:
    """Whatever a pass's messages hold (a secret or an unsafe byte in one of them, or none),
    and whatever a user's comp id is, each message is one line as ``shown`` makes it (a
    directory an example: hypothesis runs many)."""
    with tempfile.TemporaryDirectory() as tmp:
        log = AuditLog(Path(tmp) / "audit.log")
        plain = b"8=FIX.4.4\x0135=0\x01"
        for ts, (inbound, comp, raw) in enumerate([*passes, (False, "CLIENT1", plain)]):
            log.record(ts, inbound, comp, raw)
        log.flush()
        log.record(99, True, "CLIENT1", plain)  # a second pass appends
        log.close()
        lines = (Path(tmp) / "audit.log").read_bytes().split(b"\n")
    expected = [
        b"%d %s %s %s" % (ts, b"in" if inbound else b"out", shown(comp.encode()), shown(raw))
        for ts, (inbound, comp, raw) in enumerate([*passes, (False, "CLIENT1", plain)])
    ]
    expected.append(b"99 in CLIENT1 8=FIX.4.4|35=0|")
    assert lines == [*expected, b""]
