"""The version of the exchange's rules: what the pure cores (the matcher's engine and books,
the router's sequencer, risk and settlement) decide for a given command sequence.

Recovery replays the journal to rebuild the state those cores had, and promises the events
they made the first time, byte for byte: the reports clients got, the rows the database
holds. That holds only under the rules the commands were sequenced under. A build whose
rules differ (a stop-limit collared around another price, a refusal moved from the last
trade to the book) would make other events from the same journal, and its state would
differ from what was acknowledged, in silence.

So each journal segment records the version it was written under (its header), and a replay
refuses entries of another version (``JournalRulesError``, naming the segment and both
versions) instead of guessing. Entries a snapshot covers are never replayed, so the upgrade
is: stop the exchange, write a snapshot at the journal's end with the build that wrote it
(``ringex replay --snapshot``), then start the new build, which begins a segment of its own.
A standby follows only a primary of the same version (the replication handshake).

Bump ``RULES_VERSION`` with any change that makes a core decide differently for the same
input; a change that only makes it faster, or changes what it reports outside the journaled
path, keeps it. 0 in a segment means a build from before versions were recorded.

History: 1, the rules as of 2026-11-27 (review 51's matcher rules); 2, a transfer's
idempotency key is in use for a week after its transfer, not for ever
(``procs/core/transfer_keys.py``, review 63); 3, a market buy sent with a worst price is
capped at the band above the last trade too (refused ``NO_REFERENCE_PRICE`` before the first),
and a market buy whose cap is below the best ask is refused ``PRICE_OUT_OF_BAND`` rather than
accepted and expired unfilled (``accounts.py``, ``order_checks.py``, review 328).
"""

from __future__ import annotations

from typing import Final

RULES_VERSION: Final = 3
