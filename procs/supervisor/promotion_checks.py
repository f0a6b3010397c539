"""Whether a standby may be promoted in its primary's place, as ``scripts/failover.py
promote`` judges it before it fences anything: what both journals hold where this host reads
them (``diverged``, ``journal_last``), what a sync primary's block says was acknowledged
(``unsafe``), whether the standby's config is a standby's at all (``not_a_standby``), and
whether its promoted processes would start (``units_differ``, ``fees_refused``). Each answer
is "" (or 0) where nothing says no, else why, for the operator to read. Imports are local:
the script starts in a hurry (a failover waits on it)."""

from __future__ import annotations

import time
from pathlib import Path

from config.schema import RingexConfig
from procs.common.epochs import Epochs


def journal_path(cfg: RingexConfig) -> Path:
    """``topology.journal_dir``, without the 0.13 s of importing the shm package."""
    return Path(cfg.var_dir) / cfg.instance / "journal"


def entry_at(cfg: RingexConfig, seq: int) -> bytes | None:
    """The journal entry of ``seq`` where this host can read it, else None."""
    from procs.common.journal import JournalError, JournalReader  # noqa: PLC0415
    from procs.common.record_codec import RecordCodec  # noqa: PLC0415
    from procs.common.topology import journal_archive_dir  # noqa: PLC0415

    directory = journal_path(cfg)
    if seq < 1 or not directory.is_dir():
        return None
    codec = RecordCodec()
    reader = JournalReader(
        directory,
        slot_size=codec.slot_size,
        schema_id=codec.journal_schema_id,
        archive=journal_archive_dir(cfg),  # seq 1 of a journal archived there
    )
    try:
        for found, image in reader.entries(seq, foreign="yield"):  # compared as bytes
            return bytes(image) if found == seq else None
    except JournalError:  # archived, or corrupt: nothing to compare with
        return None
    return None


def diverged(primary: RingexConfig, standby: RingexConfig) -> int:
    """A seq where both journals, readable from this host, hold different entries, else 0.
    Compared: their first, the standby's last, and the last both hold. A standby checks the
    history hash of every frame it takes, so a divergence is an old history on one side: a
    standby behind its primary's restart, or ahead of it, when the primary's host lost a
    tail it had shipped (the source ships before the router's fsync) and the primary then
    sequenced other commands at those seqs."""
    if not journal_path(standby).is_dir() or not journal_path(primary).is_dir():
        return 0
    last = [journal_last(standby), journal_last(primary)]
    for seq in sorted({1, last[0], min(last)} - {0}):
        mine, theirs = entry_at(standby, seq), entry_at(primary, seq)
        if mine is not None and theirs is not None and mine != theirs:
            return seq
    return 0


def journal_last(cfg: RingexConfig) -> int:
    """The last seq of ``cfg``'s journal where this host reads it (0: none)."""
    from procs.common.journal import JournalReader  # noqa: PLC0415
    from procs.common.record_codec import RecordCodec  # noqa: PLC0415

    directory = journal_path(cfg)
    if not directory.is_dir():
        return 0
    codec = RecordCodec()
    return JournalReader(
        directory, slot_size=codec.slot_size, schema_id=codec.journal_schema_id
    ).last_seq()


def unsafe(primary: RingexConfig, standby: RingexConfig) -> str:
    """Why promoting ``standby`` would fork or lose acknowledged history ("" when nothing
    this host reads says so): its journal is fenced (an old primary, whose tail past the
    epoch that fenced it only ``demote`` cuts), or, in sync mode, the primary's block shows
    seqs acknowledged that the standby lacks: it acknowledged more than it holds, or the
    router went on without it (degraded) past its end. Async mode loses its lag by design."""
    from procs.common import replication_ack as ack  # noqa: PLC0415

    fence = Epochs.load(journal_path(standby)).fence
    if fence is not None:
        return (
            f"its journal is fenced by epoch {fence.epoch} ({fence.by}): it is an old primary, "
            "which may hold seqs that instance never had; rebuild it as that instance's "
            "standby first (failover.py demote)"
        )
    if primary.replication.mode != "sync":
        return ""
    try:  # read, not mapped: nothing is created where no block is
        data = (ack.ack_dir(primary.var_dir, primary.instance) / ack.BLOCK_FILE).read_bytes()
    except OSError:
        return ""
    words = memoryview(data[: ack.SIZE]).cast("q") if len(data) >= ack.SIZE else None
    if words is None or words[0] != ack.LAYOUT:
        return ""
    held, acked = journal_last(standby), words[ack.ACKED_SEQ]
    if acked > held:
        return (
            f"{primary.instance}'s standby acknowledged seq {acked} as durable, and this "
            f"journal ends at seq {held}: seqs {held + 1}..{acked} were acknowledged to clients"
        )
    journaled = max(journal_last(primary), words[ack.JOURNAL_SEQ])
    if words[ack.DEGRADED] and journaled > held:
        return (
            f"{primary.instance}'s sync replication is suspended (degraded: it went on without "
            f"the standby), so its seqs {held + 1}..{journaled} may have been acknowledged to "
            f"clients, and this journal ends at seq {held}"
        )
    return ""


def not_a_standby(primary: RingexConfig, standby: RingexConfig) -> str:
    """Why ``standby`` is no standby of ``primary`` to promote ("" where nothing says so):
    its config names no primary (a plain instance's config: promoted, it would take the
    primary's place empty), or its journal holds no seq where the primary's, read on this
    host, holds some (a standby that never followed it)."""
    if not standby.replication.primary:
        return (
            "its config names no primary (replication.primary), so it is no instance's "
            f"standby: it would take {primary.instance}'s place without its history"
        )
    if not journal_last(standby) and (theirs := journal_last(primary)):
        return f"its journal holds no seq, and {primary.instance}'s ends at seq {theirs}"
    return ""


def units_differ(primary: RingexConfig, standby: RingexConfig) -> str:
    """Why the standby's config may not run on the primary's journal ("" when it may): its
    units differ from those pinned beside it (``procs/common/units.py``), as shipped to the
    standby's journal or, where this host reads it, in the primary's own."""
    from procs.common import units  # noqa: PLC0415

    return units.units_differ(standby) or units.units_differ(standby, units.units_path(primary))


def fees_refused(standby: RingexConfig) -> str:
    """Why the standby's promoted router would not start over its fees ("" when it would):
    a starting router journals its configured fees, and refuses a symbol's new fee margin
    while buys rest under the old one (``fees.check_schedule``), at every start. Judged as
    that router will judge it, on the standby's state (recovered here from its snapshot and
    journal: the fees in force and the buys resting), before the primary is fenced (review
    51). A recovery the standby's own start would fail is left to it. And a fee account
    that is a user's, which its start refuses (review 237's ``fee_account_user``)."""
    from procs.core.fees import FeeChangeError  # noqa: PLC0415  (the failover's imports)
    from procs.core.recovery import recover  # noqa: PLC0415
    from procs.supervisor.preflight import fee_account_user  # noqa: PLC0415

    if refused := fee_account_user(standby):
        return f"its promoted instance would not start: {refused}"
    try:
        recover(standby).sequencer.fee_changes(time.time_ns())
    except FeeChangeError as exc:
        return f"its promoted router would refuse its configured fees and not start: {exc}"
    except Exception:  # not this check's to judge: the start says why
        return ""
    return ""
