"""A symbol's trading rules as journaled state: which tick, lot, size limits, iceberg limit and
price bands an order met when it was executed.

Rules are config, but an order must be executed under the rules in force when it was
sequenced, also when a restart replays it under a config changed since: a market order
sweeps as far as ``band_bps`` let it live, a limit order is refused or not as its collar
said then. So the rules are journaled, as fees are (``procs/core/fees.py``): a starting
router journals a ``SymbolRules`` record for every symbol on a new journal, and one for each
symbol whose configured rules differ from those its recovered matcher holds (``changes``),
and routes it to the symbol's matcher, which puts it in force between two commands
(``Matcher.execute``). A matcher's snapshot keeps the rules in force with its books, so a
restore does not take the config's either.

A journal written before this record existed has none: its replay takes the config's rules,
as it always did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from procs.common.records import SymbolRules
from procs.core.symbols import SymbolSpec

#: ``SymbolSpec``'s fields, in the order ``SymbolRules`` and a matcher's snapshot list them.
RULE_FIELDS = (
    "tick",
    "lot",
    "min_qty",
    "max_qty",
    "iceberg_parts",
    "band_bps",
    "limit_band_bps",
)


def rules_of(spec: SymbolSpec) -> tuple[int, ...]:
    """``spec``'s rules, as ``RULE_FIELDS``."""
    return tuple(getattr(spec, name) for name in RULE_FIELDS)


def record_of(spec: SymbolSpec) -> SymbolRules:
    """``spec`` as a ``SymbolRules`` record, unsequenced (seq and time 0)."""
    return SymbolRules(0, 0, spec.symbol, *rules_of(spec))


def spec_of(symbol: int, rules: Iterable[int]) -> SymbolSpec:
    """The spec of ``symbol`` with ``rules`` (``RULE_FIELDS``, a record's or a snapshot's)."""
    return SymbolSpec(symbol=symbol, **dict(zip(RULE_FIELDS, rules, strict=True)))


def spec_of_record(record: SymbolRules) -> SymbolSpec:
    return spec_of(record.symbol, (getattr(record, name) for name in RULE_FIELDS))


def changes(
    configured: Iterable[SymbolSpec], in_force: Mapping[int, SymbolSpec], *, every: bool
) -> list[SymbolRules]:
    """Unsequenced records of the configured specs that differ from those ``in_force`` (by
    symbol id); of every one when ``every`` (a new journal: a replay from its first entry
    then never depends on the config of the day). In symbol id order."""
    return [
        record_of(spec)
        for spec in sorted(configured, key=lambda s: s.symbol)
        if every or in_force.get(spec.symbol) != spec
    ]
