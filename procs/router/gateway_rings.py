"""Taking commands from a gateway's ring: a record that does not decode (a gateway's bug) must
neither stop the router nor, left uncommitted, stop it again after a restart; the ring, not a
record's header, says which gateway sent it (review 343)."""

from __future__ import annotations

import logging

import msgspec

from procs.common.record_codec import RecordDecodeError
from procs.common.records import Record
from shm import Consumer

log = logging.getLogger("ringex.router")


def read_commands(consumer: Consumer[Record], quota: int) -> list[Record]:
    """Up to ``quota`` records of a gateway's ring. One that does not decode (a field out of
    its bounds: a gateway's bug) is logged and passed over once it is the first unread, so it
    can neither stop the router nor, left uncommitted, stop it again after a restart; the
    records before it come first (they are committed only after they are journaled)."""
    try:
        return consumer.read(quota)
    except RecordDecodeError:
        pass
    good: list[Record] = []
    while len(good) < quota:
        try:
            record = consumer.poll()
        except RecordDecodeError as exc:
            if good:
                break  # they first; the bad one is passed over on the next read
            log.error("ring %s, record %d: %s; skipped",
                      consumer.ring.name, consumer.sequence, exc)  # fmt: skip
            consumer.pass_over()  # committed with the rest: their replies may be owed yet
            continue
        if record is None:
            break
        good.append(record)
    return good


def from_ring(records: list[Record], gateway: int) -> list[Record]:
    """``records`` as sent by ``gateway``, the ring they came on: a header naming another
    gateway (a gateway's bug) is overwritten, and logged. Trusted, it let a trading
    gateway's mass cancel claim the operator's exemption from the account's rate, and a
    command journaled under one gateway and read again under another after a crash was
    sequenced twice (review 343)."""
    if all(getattr(r, "gateway", gateway) == gateway for r in records):
        return records  # the rule: a header is its ring's
    return [as_from(r, gateway) for r in records]


def as_from(record: Record, gateway: int) -> Record:
    """``record`` with ``gateway``, its ring's, in its header."""
    header = getattr(record, "gateway", gateway)
    if header == gateway:
        return record
    log.error("gateway %d sent %r naming gateway %d: taken as its own", gateway, record, header)
    return msgspec.structs.replace(record, gateway=gateway)
