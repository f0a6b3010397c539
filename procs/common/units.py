"""The units the journal's integers are in, pinned beside it when it begins.

A balance is an integer of its asset's minor unit (10**-decimals), a price and a quantity
integers of 10**-price_decimals of the symbol's quote and 10**-qty_decimals of its base
(``procs/core/accounts.py``). The journal holds those integers, not the units. A config that
changed an asset's decimals, a symbol's decimals or assets, or which id names what, would make
every balance mean another amount, and a replay settle each journaled trade in other units
than it settled live (same input, other output). Symbol rules and fees may change and are
journaled when they do (``symbol_rules.py``, ``fees.py``); units cannot change under a
journal. So ``units.json`` in the journal's directory records them when the router first
starts on the journal, and a start whose config says otherwise is refused, naming each
difference: by the supervisor before it touches the instance (``ringex run``) and before
each restart (a profile edited meanwhile), by the router before it replays (a unit started
another way), and by the tools that read the journal or send amounts with a config
(``ringex replay``, ``ringex admin``). The file is shipped to a standby's journal with the
gateways' state (``procs/replica/files.py``), so a standby of other units is refused too:
at its start, by ``failover.py promote`` before it fences the primary, and at its promotion.

Assets and symbols added to the config are pinned as they first appear; one removed from it
stays pinned (its id may not come back naming something else). A journal begun before this
file existed has it written at its next start, from the config of that start.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from config.schema import RingexConfig
from procs.common.durable import replace_durably
from procs.common.exit_codes import REFUSED
from procs.common.topology import ADMIN_GATEWAY, journal_dir

FILE_NAME = "units.json"


def units_path(cfg: RingexConfig) -> Path:
    return journal_dir(cfg) / FILE_NAME


def units_of(cfg: RingexConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """The config's units: each asset's id and decimals, each symbol's id, assets and
    decimals, by name; and each symbol's matcher, whose snapshots hold its book by name."""
    owner = {symbol: m.name for m in cfg.matchers for symbol in m.symbols}
    return {
        "assets": {a.name: {"id": a.id, "decimals": a.decimals} for a in cfg.assets},
        "symbols": {
            s.name: {
                "id": s.id,
                "base": s.base,
                "quote": s.quote,
                "price_decimals": s.price_decimals,
                "qty_decimals": s.qty_decimals,
                "matcher": owner.get(s.name, ""),
            }
            for s in cfg.symbols
        },
        "gateways": {g.name: {"id": g.id} for g in cfg.gateways},
    }


#: The keys the router writes for an asset and a symbol, and those a file written before a
#: symbol's matcher was pinned (review 206) holds.
_SYMBOL_KEYS = frozenset(("id", "base", "quote", "price_decimals", "qty_decimals"))
_KEYS = {
    "assets": (frozenset(("id", "decimals")), frozenset(("id", "decimals"))),
    "symbols": (_SYMBOL_KEYS | {"matcher"}, _SYMBOL_KEYS),
    "gateways": (frozenset(("id",)), frozenset(("id",))),
}
#: What a units file holds: a file written before gateways were pinned lacks them.
_KINDS = frozenset(_KEYS)


class UnitsError(ValueError):
    """The config's units differ from the journal's, or its units file is not readable."""


def _read(path: Path) -> dict[str, dict[str, dict[str, Any]]] | None:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError as exc:  # written whole by a rename: only a hand edit gets here
        raise UnitsError(f"{path}: not the units JSON the router writes ({exc})") from None
    if not isinstance(doc, dict) or not {"assets", "symbols"} <= set(doc) <= _KINDS:
        raise UnitsError(f"{path}: not the units JSON the router writes ({str(doc)[:80]})")
    for kind, entries in doc.items():  # each level an object: a list or a number where one
        if not isinstance(entries, dict) or not all(  # belongs raised AttributeError (141)
            isinstance(fields, dict) for fields in entries.values()
        ):
            raise UnitsError(f"{path}: its {kind} are not the objects the router writes")
        for name, fields in entries.items():  # a key the router never writes (a damaged
            keys, older = _KEYS[kind]  # "matcher" would be one) says what it pins no more
            if not older <= fields.keys() <= keys:
                raise UnitsError(f"{path}: its {kind} {name!r} has keys {sorted(fields)}, "
                                 f"not the router's {sorted(keys)}")  # fmt: skip
    return doc


def units_refused(cfg: RingexConfig, path: Path | None = None) -> str:
    """Why this config may not run on its journal ("" when it may): each asset or symbol
    whose units differ from those pinned (in ``path``, by default beside the config's own
    journal), and each id that names something else now."""
    path = path or units_path(cfg)
    pinned = _read(path)
    if pinned is None:
        return ""
    now = units_of(cfg)
    problems = [
        *_differences("asset", pinned["assets"], now["assets"]),
        *_differences("symbol", pinned["symbols"], now["symbols"]),
    ]
    if problems:
        return (
            f"the config's units differ from those of the journal ({path}): "
            + "; ".join(problems)
            + ". The journal's amounts are integers of the units it began with: a replay "
            "under others would change every balance, so units cannot change under a "
            "journal (a new instance, with its own journal, can have others)"
        )
    return _books_refused(pinned["symbols"], now["symbols"], path) or _gateways_refused(
        pinned.get("gateways", {}), now["gateways"], path
    )


def _gateways_refused(kept: dict[str, Any], now: dict[str, Any], path: Path) -> str:
    """Why the config's gateways cannot take the state the journal's left ("" when they
    can): a gateway's order log, ClOrdIDs, ExecID blocks and FIX session stores are under
    its name (``var/<instance>/gateway/<name>``), its orders in the books under its id, so
    neither may change (review 208: a renamed one started from nothing, its sessions'
    numbers and orders lost; one of another id never heard of its orders' fills). A
    gateway added or removed is no change of either."""
    problems = _differences("gateway", kept, now)
    if not problems:
        return ""
    return (
        f"the config's gateways differ from those of the journal ({path}): "
        + "; ".join(problems)
        + ". A gateway's state is kept under its name and its orders under its id: neither "
        "can change under a journal (give it the journal's again; a new gateway may be "
        "added with a new name and id)"
    )


def _differences(kind: str, kept: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """Each ``kind`` (asset, symbol, gateway) of ``now`` whose pinned fields differ from
    ``kept``'s, and each id pinned to another name; a symbol's matcher is
    ``_books_refused``'s, a key pinned since a file was written not yet compared."""
    problems: list[str] = []
    for name, fields in now.items():
        before = kept.get(name)
        if before is None:
            owner = next((n for n, f in kept.items() if f.get("id") == fields["id"]), None)
            if owner is not None:
                problems.append(
                    f"{kind} id {fields['id']} names {name!r} in the config and {owner!r} "
                    "in the journal"
                )
            continue
        for key, value in fields.items():
            if key in before and key != "matcher" and before[key] != value:
                problems.append(
                    f"{kind} {name} {key}: {value!r} in the config, {before[key]!r} in the journal"
                )
    return problems


def _books_refused(kept: dict[str, Any], now: dict[str, Any], path: Path) -> str:
    """Why the config's matchers cannot take the books the journal's left ("" when they
    can): a matcher's snapshots hold its symbols' books under its name, so a symbol that has
    run stays with its matcher (review 206: a matcher renamed started its books empty, the
    router's differing from its own). One removed from a matcher that stays is its
    restore's to refuse, where a snapshot holds its book."""
    problems: list[str] = []
    for name, fields in now.items():
        was = kept.get(name, {}).get("matcher")
        if was and was != fields["matcher"]:
            problems.append(
                f"symbol {name} is matcher {was!r}'s in the journal, {fields['matcher']!r}'s "
                f"in the config (name that matcher {was!r} again, its symbols with it)"
            )
    if not problems:
        return ""
    return (
        f"the config's matchers differ from those of the journal ({path}): "
        + "; ".join(problems)
        + ". A matcher's snapshots hold its symbols' books under its name: a book cannot "
        "move to another matcher (a new symbol may join any matcher; a new instance may lay "
        "its books out anew)"
    )


def gone_gateways_refused(cfg: RingexConfig, resting: dict[int, int]) -> str:
    """Why the router may not start ("" when it may): ``resting`` (gateway id -> orders that
    gateway entered resting in the books) names a gateway the config no longer has, so no
    one would be told of those orders' fills, nor could cancel them by their ClOrdIDs
    (review 208). Named as the journal's units file pinned it."""
    configured = {g.id for g in cfg.gateways} | {ADMIN_GATEWAY}  # (the operator's: no FIX)
    names = {fields["id"]: name for name, fields in _pinned(cfg, "gateways").items()}
    gone = [
        f"gateway {names.get(gid, '?')} (id {gid}): {count} orders"
        for gid, count in sorted(resting.items())
        if gid not in configured
    ]
    if not gone:
        return ""
    return (
        f"orders rest that gateways no longer in the config entered: {'; '.join(gone)}. "
        "Their fills would be reported to no one: configure the gateway again, cancel its "
        "orders (ringex admin cancel-all, or its clients), then remove it"
    )


def removed_symbols(cfg: RingexConfig) -> str:
    """The symbols the journal has run that the config no longer has, named with their ids
    ("ETH-USD (id 2)"), "" when none: what a recovery refused for an unknown symbol blames."""
    now = {s.name for s in cfg.symbols}
    gone = [f"{n} (id {f['id']})" for n, f in _pinned(cfg, "symbols").items() if n not in now]
    return ", ".join(sorted(gone))


def removed_assets(cfg: RingexConfig) -> str:
    """The assets the journal has known that the config no longer has, named with their
    ids ("ETH (id 3)"), "" when none: what a recovery refused for an unknown asset blames."""
    now = {a.name for a in cfg.assets}
    gone = [f"{n} (id {f['id']})" for n, f in _pinned(cfg, "assets").items() if n not in now]
    return ", ".join(sorted(gone))


def _pinned(cfg: RingexConfig, kind: str) -> dict[str, Any]:
    """What the config's journal pinned of ``kind``, by name: for naming what a refusal is
    about; none where there is no readable file (the start's own check says why)."""
    try:
        return (_read(units_path(cfg)) or {}).get(kind, {})
    except UnitsError:
        return {}


def units_differ(cfg: RingexConfig, path: Path | None = None) -> str:
    """``units_refused``, with a units file that is not one the router writes as a reason
    too: what a start or a tool checks (the router would refuse at every start)."""
    try:
        return units_refused(cfg, path)
    except UnitsError as exc:
        return str(exc)


def pin_units(cfg: RingexConfig) -> None:
    """Record the config's units beside the journal, adding what is new; the ones pinned
    stay (``units_refused`` was "" for this config). Durable on return."""
    path = units_path(cfg)
    pinned = _read(path) or {"assets": {}, "symbols": {}}
    now = units_of(cfg)
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in _KINDS:  # what is pinned stays; what is new, and a key or kind pinned since
        kept = pinned.get(kind, {})  # (a symbol's matcher, the gateways), is added
        merged[kind] = {n: {**now[kind].get(n, {}), **kept.get(n, {})} for n in now[kind] | kept}
    if merged != pinned:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(merged, indent=1, sort_keys=True).encode() + b"\n"
        replace_durably(path, data)


def exit_if_other_units(cfg: RingexConfig, process: str) -> None:
    """For a process's start (a systemd unit restarts on its own and loads the profile
    again, edited or not): log why and exit ``REFUSED`` when the config's units are not the
    journal's, before anything is attached or converted."""
    if refused := units_differ(cfg):
        logging.getLogger(f"ringex.{process}").error("%s not started: %s", process, refused)
        raise SystemExit(REFUSED)
