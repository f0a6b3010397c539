"""The supervisor's daily session end: sends END_OF_SESSION (every symbol) through the admin
rings when ``session_clock`` says one is due and the journal does not hold it, and remembers
it in the run directory.

``poll`` is called from the supervisor's loop about once a second and never waits on another
process: the admin ring is tried once (an operator's ``ringex admin`` holding it, or a full
ring, means another try at the next poll), and the rest is integer arithmetic, but for a look
at the journal once an end is due (a bisection, then the entries since the end: milliseconds,
unless the journal ran long past the end without one; ``journaled_ends.py``).

Two records of the ends sent. The remembered end (``var/<instance>/run/session_end.json``) is
this host's: it keeps a restarted supervisor from sending an end twice, and tells a first
start under the schedule (none) from one that was down across an end. The journal is the
instance's, and what a standby holds and a promotion inherits: before an end is sent, an
END_OF_SESSION for every symbol sequenced at or after it (the old primary's, or this
supervisor's own, journaled before it died and could remember it) is taken as that day's
end, remembered, and not sent again. The file is written after the send, saying the end
is not journaled yet, and again once the journal holds it (looked for at each poll): a crash
between, or an instance stopped with the end unread in its admin ring (a router in a crash
loop; the next start makes new rings), sends the end again at the next start where the
router had not journaled it; written before the send, a crash could lose the end and leave
the whole day's DAY orders resting (review 221: taken as sent, it was). A
journal that cannot be read is logged and the end sent, for the same reason. The file is
synced before it is renamed over the old one, and one that cannot be read all the same (a
power loss, a hand's edit) is not a first start, which would take the end that passed as
sent: the end before it is, so the end that passed is sent unless the journal holds it.

A clock set back past the remembered end (``session_clock.behind``) starts the schedule again
from the clock's next end, remembering the journal's last seq with it: no end sequenced up to
there is taken for one of the schedule's ends from then on, whatever it was stamped.

A standby's supervisor sends none (its primary's reaches it through the journal), but keeps
the record all the same, from the journal: a first start remembers the end that passed, and
each end its primary journals is remembered as it arrives. The instance it is promoted into
(same run directory) so continues its primary's schedule rather than start one: an end its
primary straddled (died just before it, promoted after) is due and not journaled, and is
sent once; one its primary journaled is not sent again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from config.schema import RingexConfig
from procs.admin.client import AdminClient, AdminError
from procs.common.crc_frames import crc_hex
from procs.common.durable import replace_durably
from procs.common.journal import JournalError
from procs.common.run_files import run_dir
from procs.supervisor.journaled_ends import STEP_MARGIN_NS, JournaledEnds
from procs.supervisor.session_clock import DAY_NS, behind, due_end, latest_end, next_end
from shm import ShmError

log = logging.getLogger("ringex.supervisor")

#: A send this much after its scheduled time says how late it is (the supervisor was down).
LATE_NS = 5 * 10**9


def session_end_path(cfg: RingexConfig) -> Path:
    return run_dir(cfg) / "session_end.json"


def send_end_of_session(cfg: RingexConfig) -> None:
    """END_OF_SESSION for every symbol, one try at the admin ring: raises ``ShmError`` (the
    ring is gone) or ``AdminError`` (full, or another admin's) where it could not go."""
    client = AdminClient(cfg, wait_s=0.0)  # the watch loop must not wait on an operator
    try:
        client.end_session(None, timeout_s=0.0)
    finally:
        client.close()


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ns // 10**9))


class SessionEnds:
    """One instance's schedule. ``send`` (tests replace it) raises ``ShmError`` or
    ``AdminError`` when the command could not go; it is tried again at the next poll. One
    that ``follows`` (a standby's) sends nothing and remembers the ends its journal brings."""

    def __init__(
        self,
        cfg: RingexConfig,
        minute: int,
        send: Callable[[], None] | None = None,
        *,
        follows: bool = False,
    ) -> None:
        self.cfg = cfg
        self.minute = minute
        self.follows = follows
        self.path = session_end_path(cfg)
        self.journal = JournaledEnds(cfg)
        self._send = send if send is not None else lambda: send_end_of_session(cfg)
        self.last_sent_ns: int | None = None  # read at the first poll
        #: Ends sequenced up to this seq are not the schedule's (its clock was set back since).
        self.after_seq = 0
        self._failed_for: int | None = None  # the end whose send failed (logged once)
        self._unsaved_for: int | None = None  # the end whose record failed (logged once)
        self._unreadable_for: int | None = None  # the end the journal was unreadable for
        #: the end sent and not seen in the journal yet, and the journal's last seq at its
        #: send: remembered once it is (review 221)
        self._unjournaled: tuple[int, int] | None = None

    @classmethod
    def of(cls, cfg: RingexConfig) -> SessionEnds | None:
        """The schedule of ``cfg``, or None where none is configured. A standby's follows
        (its primary's END_OF_SESSION reaches it through the journal)."""
        minute = cfg.supervisor.session_end_minute()
        if minute is None:
            return None
        return cls(cfg, minute, follows=bool(cfg.replication.primary))

    def poll(self, now_ns: int) -> int | None:
        """Send the end that is due at ``now_ns``, if one is and the journal lacks it: its
        scheduled time, or None (always None where it ``follows``)."""
        if self.last_sent_ns is None and not self._load(now_ns):
            self._save(latest_end(now_ns, self.minute), now_ns)  # a first start: the next
            role = "; a standby sends none, and remembers its primary's" if self.follows else ""
            log.info(
                "session ends daily at %s UTC; the next at %s%s",
                self.cfg.supervisor.session_end_utc, _utc(next_end(now_ns, self.minute)), role,
            )  # fmt: skip
            return None
        assert self.last_sent_ns is not None  # loaded
        if self._unjournaled is not None:
            self._confirm(now_ns)
        if behind(now_ns, self.minute, self.last_sent_ns):
            self._restart_schedule(now_ns)
            return None
        end = due_end(now_ns, self.minute, self.last_sent_ns)
        if end is None or self._journaled(end, now_ns) or self.follows:
            return None
        try:
            self._send()
        except (ShmError, AdminError) as exc:
            if self._failed_for != end:
                self._failed_for = end
                log.warning("session end %s: END_OF_SESSION not sent yet (%s); trying again "
                            "every second", _utc(end), exc)  # fmt: skip
            return None
        self._failed_for = None
        # remembered as sent, not yet journaled: one left unread in the admin ring (the router
        # in a crash loop, the instance stopped) goes again at the next start, whose rings
        # are new (review 221: it was remembered as sent, and lost)
        self._unjournaled = (end, self._journal_end())
        self._save(end, now_ns, sent_after=self._unjournaled[1])
        late = f" ({(now_ns - end) / 1e9:.0f} s late)" if now_ns - end > LATE_NS else ""
        following = _utc(next_end(now_ns, self.minute))
        log.info("session end %s: END_OF_SESSION sent to every symbol%s, DAY orders expire; "
                 "the next at %s", _utc(end), late, following)  # fmt: skip
        return end

    def _confirm(self, now_ns: int) -> None:
        """Remember the end sent once the journal holds it (the next poll, as a rule); a
        journal that cannot be read is looked at again at the next."""
        assert self._unjournaled is not None
        end, sent_after = self._unjournaled
        try:
            found = self._sent_found(end, sent_after)
        except (JournalError, OSError, ValueError):  # (said where it is due: ``_journaled``)
            return
        if found:
            self._unjournaled = None
            self._save(end, now_ns)

    def _sent_found(self, end: int, sent_after: int) -> bool:
        """Whether the journal holds the END_OF_SESSION sent for ``end`` when it ended at
        ``sent_after``: one sequenced after that, stamped up to ``STEP_MARGIN_NS`` before the
        end's time (a router clock stepped back meanwhile: review 223), not only after it."""
        return self.journal.first_since(end - STEP_MARGIN_NS, sent_after) is not None

    def _journal_end(self) -> int:
        """The journal's last seq (what an end sent now is sequenced after); ``after_seq``
        where it cannot be read."""
        try:
            return self.journal.last_seq()
        except (JournalError, OSError) as exc:
            log.warning("session end: the journal cannot be read (%s)", exc)
            return self.after_seq

    def _journaled(self, end: int, now_ns: int) -> bool:
        """True, and ``end`` remembered, where the journal holds that day's end already:
        stamped up to ``STEP_MARGIN_NS`` before its time where its sender's clock said the
        end's time (review 282: one stamped 2 s early by a router clock stepped back was sent
        again by a promoted standby, expiring the next session's DAY orders; 294: not an end
        sent before it, the day before's caught up a minute early)."""
        try:
            found = self.journal.first_since(end - STEP_MARGIN_NS, self.after_seq, sent_from=end)
        except (JournalError, OSError, ValueError) as exc:  # RecordDecodeError: a ValueError
            if self._unreadable_for != end:
                self._unreadable_for = end
                then = "tried again every second" if self.follows else "sending it"
                log.warning("session end %s: the journal cannot be read (%s); %s",
                            _utc(end), exc, then)  # fmt: skip
            return False
        if found is None:
            return False
        self._save(end, now_ns)
        then = "remembered" if self.follows else "not sent again"
        log.info("session end %s: END_OF_SESSION for every symbol journaled at seq %d (%s); %s",
                 _utc(end), found.seq, _utc(found.ts_ns), then)  # fmt: skip
        return True

    def _restart_schedule(self, now_ns: int) -> None:
        """The clock reads more than a day before the end last sent: start again from its
        next end, and take no end the journal holds so far for one of the schedule's."""
        try:
            after = self.journal.last_seq()
        except (JournalError, OSError) as exc:
            after = self.after_seq
            log.warning("session end: the journal cannot be read (%s)", exc)
        sent = self.last_sent_ns
        assert sent is not None
        log.warning(
            "session end: the clock reads %s, more than a day before the end last sent (%s): "
            "it was set back; the schedule starts again, the next end at %s, and no "
            "END_OF_SESSION up to seq %d counts for it",
            _utc(now_ns), _utc(sent), _utc(next_end(now_ns, self.minute)), after,
        )  # fmt: skip
        self.after_seq = max(self.after_seq, after)
        self._save(latest_end(now_ns, self.minute), now_ns)

    def _load(self, now_ns: int) -> bool:
        """Read the remembered end: False where there is none (a first start). One that
        cannot be read is taken as the end before the one that passed, which is then due."""
        try:
            doc = json.loads(self.path.read_bytes())
            if not isinstance(doc, dict):
                raise ValueError(f"a JSON {type(doc).__name__}, not an object")
            end, after = doc.get("end_ns"), doc.get("after_seq", 0)
            sent = doc.get("sent_after_seq")
            if not _is_int(end) or not _is_int(after) or not (sent is None or _is_int(sent)):
                raise ValueError(
                    f"end_ns={end!r} after_seq={after!r} sent_after_seq={sent!r}, not integers"
                )
            crc = doc.get("crc32")  # (a record of an older build has none)
            if crc is not None and crc != _record_crc(cast(int, end), after, sent):
                raise ValueError(f"its crc32 {crc!r} is not that of what it says")
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as exc:  # JSONDecodeError, UnicodeDecodeError too
            self.last_sent_ns = latest_end(now_ns, self.minute) - DAY_NS
            log.warning("session end: %s cannot be read (%s): taken as %s, so the end at %s "
                        "is due unless the journal holds it", self.path, exc,
                        _utc(self.last_sent_ns), _utc(latest_end(now_ns, self.minute)),
                        )  # fmt: skip
            return True
        self.last_sent_ns, self.after_seq = end, after
        if doc.get("journaled") is False:  # sent by the last run, not seen journaled by it
            self._unjournaled = (cast(int, end), cast(int, after if sent is None else sent))
            if self._lost(*self._unjournaled):
                self.last_sent_ns = cast(int, end) - DAY_NS  # due again, sent once more
                log.warning("session end %s: sent by the last run, never journaled (its "
                            "rings went with it): due again", _utc(cast(int, end)))  # fmt: skip
        return True

    def _lost(self, end: int, sent_after: int) -> bool:
        """Whether an end sent by an earlier run is not in the journal (a journal that cannot
        be read: lost too, so sent, as a due end is); with no journal entry at all, trusted."""
        try:
            return bool(self.journal.last_seq()) and not self._sent_found(end, sent_after)
        except (JournalError, OSError, ValueError):
            return True

    def _save(self, end_ns: int, now_ns: int, *, sent_after: int | None = None) -> None:
        """Remember ``end_ns``; ``sent_after``: sent when the journal ended at that seq, and
        not seen in it yet (``_load``)."""
        self.last_sent_ns = end_ns
        doc: dict[str, object] = {"end_ns": end_ns, "end_utc": _utc(end_ns), "written_ns": now_ns}
        if sent_after is not None:
            doc["journaled"], doc["sent_after_seq"] = False, sent_after
        if self.after_seq:
            doc["after_seq"] = self.after_seq
        # a flipped digit is no end (review 141), nor a seq the end was sent after (224)
        doc["crc32"] = _record_crc(end_ns, self.after_seq, sent_after)
        # on disk before the rename (never an empty record), and the rename too; a record that
        # cannot be written (var/ full) is logged, not fatal (review 122: it stopped the
        # instance): the end is remembered here, and a restart finds it in the journal
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_durably(self.path, json.dumps(doc, indent=2).encode())
        except OSError as exc:
            if self._unsaved_for != end_ns:
                self._unsaved_for = end_ns
                log.warning("session end %s: %s not written (%s)", _utc(end_ns), self.path, exc)
            return
        self._unsaved_for = None


def _record_crc(end_ns: int, after_seq: int, sent_after: int | None = None) -> str:
    """The check a record keeps of what it says: a flipped digit of ``end_ns`` (a day
    later: an end never sent taken for sent) reads as a record that cannot be read."""
    if sent_after is None:
        return crc_hex(b"%d %d" % (end_ns, after_seq))
    return crc_hex(b"%d %d %d" % (end_ns, after_seq, sent_after))
