"""A journal's epochs: which primary wrote which seqs, and whether this journal is fenced.

Every promotion starts a new epoch (Kafka's leader epochs, Raft's terms): the promoted
instance's journal records ``(epoch, first_seq)``, the seq its first command as primary takes.
A standby keeps its primary's history, so after a failover the two journals can say exactly
where they part: everything an old primary wrote in its epoch from the new epoch's first seq on
was never replicated, and is cut when it is rebuilt as a standby (``rebuild.py``).

Fencing. ``promote`` marks the old primary's journal fenced (where it can reach it) before the
promoted instance starts; a replication source that meets a standby of a newer epoch marks
its own. A router refuses to open a fenced journal, whoever restarts it (a supervisor, a
systemd unit with ``Restart=``), so two primaries never accept orders at once; the running
router learns it from the replication block's ``FENCED`` word. Only ``failover.py demote``
(which cuts the diverged tail) lifts a fence.

The file is ``<journal dir>/epochs.json``, replaced atomically (write, fsync, rename, fsync of
the directory). A journal without one is in epoch 1 from seq 1.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Final

from procs.common.crc_frames import crc_hex
from procs.common.durable import make_dirs, replace_durably

FILE: Final = "epochs.json"


class EpochsError(ValueError):
    """An epochs file that cannot be read, or a history that does not fit another."""


class JournalFencedError(RuntimeError):
    """This journal was fenced by a promotion: its instance must not sequence commands."""


@dataclass(frozen=True)
class Fence:
    epoch: int  # the promoted epoch that fenced this journal
    by: str  # the promoted instance
    at_ns: int  # wall clock


@dataclass(frozen=True)
class Epochs:
    #: ``(epoch, first_seq)``: epochs strictly increasing, first seqs never decreasing (a
    #: promotion that wrote nothing is followed by the next at the same seq); never empty.
    history: tuple[tuple[int, int], ...] = ((1, 1),)
    fence: Fence | None = None
    #: The newest epoch this journal was told of (a standby learns its primary's, which may
    #: begin past what it holds yet): never begun here again (Raft keeps its current term).
    known: int = 0

    def __post_init__(self) -> None:
        if not self.history:
            raise EpochsError("an epoch history holds at least one epoch")
        for (e0, s0), (e1, s1) in zip(self.history, self.history[1:], strict=False):
            if e1 <= e0 or s1 < s0:
                raise EpochsError(
                    f"epoch {e1} from seq {s1} cannot follow epoch {e0} from seq {s0}"
                )

    @property
    def current(self) -> int:
        return self.history[-1][0]

    def promoted(self, epoch: int, first_seq: int) -> Epochs:
        """This history with ``epoch`` beginning at ``first_seq`` (a promotion), unfenced."""
        if epoch <= self.current:
            raise EpochsError(f"promotion to epoch {epoch}: the journal is at {self.current}")
        if epoch <= self.known:
            raise EpochsError(
                f"promotion to epoch {epoch}: its primary began epoch {self.known} already "
                "(past what this journal holds); pick a newer one"
            )
        return Epochs((*self.history, (epoch, first_seq)), known=self.known)

    def fenced(self, epoch: int, by: str) -> Epochs:
        """This journal, fenced by ``by``'s promotion to ``epoch``."""
        if epoch <= self.current:
            raise EpochsError(
                f"a fence by epoch {epoch} must be newer than this journal's {self.current}"
            )
        return replace(self, fence=Fence(epoch, by, time.time_ns()))

    def begun_by(self, next_seq: int) -> Epochs:
        """The epochs that began by ``next_seq``, unfenced: those after wrote nothing to a
        journal whose next entry is ``next_seq`` (the first epoch is always kept)."""
        begun = tuple((e, s) for e, s in self.history if s <= next_seq)
        return Epochs(begun or self.history[:1], known=max(self.known, self.current))

    def keep_before(self, primary: Epochs) -> int | None:
        """Rebuilding this journal as ``primary``'s standby: the last seq it may keep (every
        later one was written in an epoch the primary did not continue: one the primary
        began after this journal's newest, or one of this journal's own that the primary's
        history never had, a promotion the primary's line passed by), or None when all of
        it may stay. Raises ``EpochsError`` when the histories disagree before that point."""
        mine = self.current
        shared = [(e, s) for e, s in primary.history if e <= mine]
        if not shared or shared != list(self.history[: len(shared)]):
            raise EpochsError(
                f"epoch histories disagree: this journal {list(self.history)}, "
                f"the primary {list(primary.history)}"
            )
        later = [s for e, s in primary.history if e > mine]
        own = [s for e, s in self.history[len(shared) :]]  # epochs the primary never had
        bounds = [s - 1 for s in (later[:1] + own[:1])]
        return min(bounds) if bounds else None

    def check_open(self, directory: Path) -> None:
        """Raise ``JournalFencedError`` if this journal may not be written by a primary."""
        if self.fence is not None:
            f = self.fence
            raise JournalFencedError(
                f"journal {directory} is fenced: instance {f.by!r} was promoted to epoch "
                f"{f.epoch} (this journal is at epoch {self.current}); this instance must not "
                "sequence commands. Rebuild it as that instance's standby: "
                "scripts/failover.py demote --old <this config> --new <promoted config>"
            )

    # -- the file -------------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> Epochs:
        """The file's epochs (none: a journal that never changed epoch). Refused, naming the
        file (``EpochsError``), when it does not decode, holds a key or a type it should
        not, or fails its ``crc32`` (review 141: a flipped bit read as another history, as
        no fence, or as another ``known``); a file without ``crc32`` (an older build's) is
        checked for keys and types only."""
        path = directory / FILE
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:  # JSON or UTF-8 that does not decode
            raise EpochsError(f"{path}: cannot read the epochs ({exc})") from exc
        try:
            return cls._of(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise EpochsError(f"{path}: malformed epochs file ({exc})") from exc

    @classmethod
    def _of(cls, doc: object) -> Epochs:
        if not isinstance(doc, dict) or not doc.keys() <= _KEYS or "epochs" not in doc:
            raise ValueError(f"keys {sorted(doc) if isinstance(doc, dict) else doc!r}")
        crc = doc.pop("crc32", None)
        if crc is not None and crc != _crc(doc):
            raise ValueError(f"its crc32 {crc!r} is not its content's {_crc(doc)!r}: damaged")
        if crc is not None and doc.keys() != _KEYS - {"crc32"}:
            raise ValueError(f"keys {sorted(doc)}: one is missing")
        history = tuple((_int(e), _int(s)) for e, s in doc["epochs"])
        f = doc.get("fenced")
        if f is not None and (not isinstance(f, dict) or f.keys() != {"epoch", "by", "at_ns"}):
            raise ValueError(f"fenced {f!r} is neither null nor a fence")
        fence = None if f is None else Fence(_int(f["epoch"]), _str(f["by"]), _int(f["at_ns"]))
        return cls(history, fence, _int(doc.get("known", 0)))

    def save(self, directory: Path) -> None:
        make_dirs(directory)
        fence = self.fence
        doc: dict[str, object] = {
            "epochs": [list(h) for h in self.history],
            "fenced": None if fence is None else asdict(fence),
            "known": self.known,
        }
        doc["crc32"] = _crc(doc)
        replace_durably(directory / FILE, json.dumps(doc).encode())


#: The keys an epochs file holds (``crc32``: since 2026-11-28; ``known``: later than
#: ``epochs`` and ``fenced``).
_KEYS: Final = frozenset({"epochs", "fenced", "known", "crc32"})


def _crc(doc: dict[str, object]) -> str:
    """The CRC-32 of ``doc`` (without ``crc32``) as canonical JSON, in 8 hex digits."""
    return crc_hex(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())


def _int(value: object) -> int:
    if type(value) is not int:  # (not a bool, a float or a string that reads as one)
        raise TypeError(f"{value!r} is not an integer")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value
