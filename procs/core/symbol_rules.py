"""A symbol's trading rules as journaled state: which tick, lot, size limits, iceberg limit and
price bands an order met when it was executed.

Rules are config, but an order must be executed under the rules in force when it was
sequenced, also when a restart replays it under a config changed since: a market order
sweeps as far as ``band_bps`` let it live, a limit order is refused or not as its collar
said then. So the rules are journaled, as fees are (``procs/core/fees.py``): the router's
state holds the rules it journaled for each symbol (``Sequencer.rules``), and a starting
router journals a ``SymbolRules`` record for each configured symbol whose rules differ from
those or that has none journaled yet (every symbol of a new journal, one added to the
config since, one whose first start was cut short: ``changes``), and routes it to the
symbol's matcher, which puts it in force between two commands (``Matcher.execute``). A
matcher's snapshot keeps the rules in force with its books, so a restore does not take the
config's either.

A journal written before this record existed has none until its first start with it: the
commands before that replay under the config's rules, as they always did.
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


def rules_of(source: SymbolSpec | SymbolRules) -> tuple[int, ...]:
    """The rules of a spec or a record, as ``RULE_FIELDS``."""
    return tuple(getattr(source, name) for name in RULE_FIELDS)


def record_of(spec: SymbolSpec) -> SymbolRules:
    """``spec`` as a ``SymbolRules`` record, unsequenced (seq and time 0)."""
    return SymbolRules(0, 0, spec.symbol, *rules_of(spec))


def spec_of(symbol: int, rules: Iterable[int]) -> SymbolSpec:
    """The spec of ``symbol`` with ``rules`` (``RULE_FIELDS``, a record's or a snapshot's)."""
    return SymbolSpec(symbol=symbol, **dict(zip(RULE_FIELDS, rules, strict=True)))


def spec_of_record(record: SymbolRules) -> SymbolSpec:
    return spec_of(record.symbol, rules_of(record))


def changes(
    configured: Iterable[SymbolSpec], journaled: Mapping[int, tuple[int, ...]]
) -> list[SymbolRules]:
    """Unsequenced records of the configured specs whose rules differ from those
    ``journaled`` for their symbol, or that have none journaled. In symbol id order."""
    return [
        record_of(spec)
        for spec in sorted(configured, key=lambda s: s.symbol)
        if journaled.get(spec.symbol) != rules_of(spec)
    ]
