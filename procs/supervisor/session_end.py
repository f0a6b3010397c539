"""The supervisor's daily session end: sends END_OF_SESSION (every symbol) through the admin
rings when ``session_clock`` says one is due, and remembers it in the run directory.

``poll`` is called from the supervisor's loop about once a second and never blocks: the
admin ring is tried once (an operator's ``ringex admin`` holding it, or a full ring, means
another try at the next poll), and the rest is integer arithmetic. The remembered end
(``var/<instance>/run/session_end.json``) is what keeps a restarted supervisor from sending
an end twice. It is written after the send: a crash between the two sends the end again at
the next start, which expires only DAY orders entered since; written first, a crash could
lose the end and leave the whole day's DAY orders resting.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from config.schema import RingexConfig
from procs.admin.client import AdminClient, AdminError
from procs.supervisor.run_files import read_json, run_dir
from procs.supervisor.session_clock import due_end, latest_end, next_end
from shm import ShmError

log = logging.getLogger("ringex.supervisor")

#: A send this much after its scheduled time says how late it is (the supervisor was down).
LATE_NS = 5 * 10**9


def session_end_path(cfg: RingexConfig) -> Path:
    return run_dir(cfg) / "session_end.json"


def send_end_of_session(cfg: RingexConfig) -> None:
    """END_OF_SESSION for every symbol, one try at the admin ring: raises ``ShmError`` (the
    ring is another admin's, or gone) or ``AdminError`` (full) where it could not go."""
    client = AdminClient(cfg)
    try:
        client.end_session(None, timeout_s=0.0)
    finally:
        client.close()


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ns // 10**9))


class SessionEnds:
    """One instance's schedule. ``send`` (tests replace it) raises ``ShmError`` or
    ``AdminError`` when the command could not go; it is tried again at the next poll."""

    def __init__(
        self, cfg: RingexConfig, minute: int, send: Callable[[], None] | None = None
    ) -> None:
        self.cfg = cfg
        self.minute = minute
        self.path = session_end_path(cfg)
        self._send = send if send is not None else lambda: send_end_of_session(cfg)
        self.last_sent_ns: int | None = None  # read at the first poll
        self._failed_for: int | None = None  # the end whose send failed (logged once)

    @classmethod
    def of(cls, cfg: RingexConfig) -> SessionEnds | None:
        """The schedule of ``cfg``, or None: none configured, or a standby (its primary's
        END_OF_SESSION reaches it through the journal)."""
        minute = cfg.supervisor.session_end_minute()
        if minute is None or cfg.replication.primary:
            return None
        return cls(cfg, minute)

    def poll(self, now_ns: int) -> int | None:
        """Send the end that is due at ``now_ns``, if one is: its scheduled time, or None."""
        if self.last_sent_ns is None:
            self.last_sent_ns = self._load()
            if self.last_sent_ns is None:  # first start under this schedule: from the next
                self._save(latest_end(now_ns, self.minute), now_ns)
                log.info(
                    "session ends daily at %s UTC; the next at %s",
                    self.cfg.supervisor.session_end_utc, _utc(next_end(now_ns, self.minute)),
                )  # fmt: skip
                return None
        end = due_end(now_ns, self.minute, self.last_sent_ns)
        if end is None:
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
        self._save(end, now_ns)
        late = f" ({(now_ns - end) / 1e9:.0f} s late)" if now_ns - end > LATE_NS else ""
        following = _utc(next_end(now_ns, self.minute))
        log.info("session end %s: END_OF_SESSION sent to every symbol%s, DAY orders expire; "
                 "the next at %s", _utc(end), late, following)  # fmt: skip
        return end

    def _load(self) -> int | None:
        doc = read_json(self.path) or {}
        value = doc.get("end_ns")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def _save(self, end_ns: int, now_ns: int) -> None:
        self.last_sent_ns = end_ns
        doc = {"end_ns": end_ns, "end_utc": _utc(end_ns), "written_ns": now_ns}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2))
        os.replace(tmp, self.path)
