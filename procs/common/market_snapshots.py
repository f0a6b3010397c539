"""The market-data state on disk, in step with the ring cursors: a restart is seamless.

The books, tapes, tickers and candles are built from matcher events that no other process
keeps (the journal holds commands; a book level that does not change again is never sent
again), so a process that started empty would show a book with levels missing until each
changed. Instead the feed reads its rings without committing, and every ``every_s`` seconds,
or sooner after ``every_events`` events (a quarter of a ring, so a matcher never waits on
it), it writes the whole state with the ring positions it covers, then commits those
positions. A restart loads the state and reads on from the positions: the same path as a
crash, where the events since the last write are still in the rings, read again, and applied
once more to the state they had not reached.

The file is a pickle (stdlib: the state is plain objects, SortedDicts and deques, and pickle
writes them whole, at tens of MB/s) of ``{version, symbols, positions, state}``, framed with
a magic and a CRC-32 of the pickle (a bit flipped in a ring position would skip or repeat
events unseen: review 138; a file of a build before the frame is read without the check); it
is written aside and renamed over the old one, so a crash leaves one or the other. A file
from another version is ignored with a log line: the process then starts empty, as it did
before snapshots. One of another symbol set keeps the symbols the config still lists as
they were (each one's tape, ticker, candles and book); one listed anew, or whose rules
changed, starts empty, one delisted is dropped (review 226: a listing emptied them all).
"""

from __future__ import annotations

import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from procs.common.durable import make_dirs, replace_durably
from procs.common.snapshots import framed, unframed
from procs.core.market.state import MarketState
from procs.core.market.tape import TRADES_KEPT

log = logging.getLogger("ringex.marketdata")

VERSION = 2  # 2: a symbol's status is a StatusUpdate
MAGIC = b"RXM1"

#: ring name -> (the ring's created_ns, the sequence the state covers up to)
Positions = dict[str, tuple[int, int]]


@dataclass(frozen=True)
class Loaded:
    state: MarketState
    positions: Positions


class MarketSnapshots:
    def __init__(self, path: Path) -> None:
        self.path = path
        make_dirs(path.parent)
        self.saved = 0

    def save(self, state: MarketState, positions: Positions) -> int:
        """Write the state and the positions it covers; returns the bytes written."""
        symbols = sorted((s.symbol.id, s.symbol) for s in state.symbols.values())
        data = pickle.dumps(
            {"version": VERSION, "symbols": symbols, "positions": positions, "state": state},
            protocol=pickle.HIGHEST_PROTOCOL,
        )
        replace_durably(self.path, framed(data, MAGIC))  # fsynced, renamed, the dir fsynced
        self.saved += 1
        return len(data)

    def load(self, fresh: MarketState) -> Loaded | None:
        """The saved state, of ``fresh``'s symbols (see the top), or None (with the reason)."""
        if not self.path.exists():
            return None
        try:
            raw = self.path.read_bytes()  # a build's before the frame: its pickle alone
            saved: dict[str, Any] = pickle.loads(
                unframed(raw, MAGIC) if raw.startswith(MAGIC) else raw
            )
            if not isinstance(saved, dict):
                raise TypeError(f"it holds a {type(saved).__name__}, not a saved state")
            if not isinstance(saved.get("state"), MarketState) or not isinstance(
                saved.get("positions"), dict
            ):
                raise TypeError("it lacks a market state or its ring positions")
            wanted = sorted((s.symbol.id, s.symbol) for s in fresh.symbols.values())
            same = saved.get("version") == VERSION
        except Exception as exc:  # a torn or foreign file: start empty, say why
            log.warning("%s: not loadable (%s); starting with empty market state", self.path, exc)
            return None
        if not same:
            log.warning(
                "%s: saved for version %s; configured: version %d. Starting with empty market "
                "state", self.path, saved.get("version"), VERSION,
            )  # fmt: skip
            return None
        state: MarketState = saved["state"]
        now = {i: m.symbol for i, m in fresh.symbols.items()}
        kept = {i: m for i, m in state.symbols.items() if now.get(i) == m.symbol}
        if kept.keys() != state.symbols.keys() or kept.keys() != now.keys():
            log.warning(
                "%s: saved for symbols %s; configured: %s. Kept: %s; listed anew or with new "
                "rules, starting empty: %s", self.path, [s for _, s in saved.get("symbols", [])],
                [s for _, s in wanted], [m.symbol.name for m in kept.values()],
                [s.name for i, s in now.items() if i not in kept],
            )  # fmt: skip
        # in the config's order, as ``fresh`` has them: a state saved before the operator
        # reordered them would answer the tickers' arrays in the old order (review 159)
        state.symbols = {i: kept.get(i, m) for i, m in fresh.symbols.items()}
        for market in kept.values():  # a build's before the ticker kept it (review 337)
            market.ticker.restore_prev_close(market.tape.recent(TRADES_KEPT))
        state.by_stream = {m.symbol.stream: m for m in state.symbols.values()}
        return Loaded(state, dict(saved["positions"]))
