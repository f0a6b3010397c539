"""FIX 4.4's repeating groups, as ``fix44.json`` lists them, and their session-level check.

A group is a count tag (NumInGroup) followed by that many entries; each entry begins with
the group's first member (the delimiter) and lists its other members in the order the
message definition gives, a nested group among them with entries of its own. QuickFIX
validates them so (its ``ValidateUnorderedGroupFields`` on, as QuickFIX/J ships it), and
the faults map onto SessionRejectReason: a count that does not match its entries is 16
(Incorrect NumInGroup count), a member before its delimiter, out of its order, repeated in
an entry or outside its group 15 (Repeating group fields out of order).

The check is pure: the dictionary (``dictionary.py``) runs it on a message whose fields it
has otherwise found right, each of the message type's groups (and the header's) in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

OUT_OF_ORDER: Final = 15  # SessionRejectReason: Repeating group fields out of order
INCORRECT_COUNT: Final = 16  # SessionRejectReason: Incorrect NumInGroup count for group


@dataclass(frozen=True, slots=True)
class Group:
    """A repeating group: its count tag and its members in order (a tag, or a group)."""

    count_tag: int
    members: tuple[int | Group, ...]
    #: a direct member's tag (a nested group's count tag) -> its place in an entry
    place: dict[int, int] = field(init=False, compare=False, repr=False)
    #: every tag inside the group, nested groups' too (the count tag itself not)
    tags: frozenset[int] = field(init=False, compare=False, repr=False)
    nested: dict[int, Group] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        heads = [m.count_tag if isinstance(m, Group) else m for m in self.members]
        inner = {t for m in self.members if isinstance(m, Group) for t in m.tags}
        object.__setattr__(self, "place", {tag: k for k, tag in enumerate(heads)})
        object.__setattr__(self, "tags", frozenset(heads) | inner)
        object.__setattr__(
            self, "nested", {m.count_tag: m for m in self.members if isinstance(m, Group)}
        )

    def merged(self, ours: Group) -> Group:
        """This group with the members of ``ours`` it lacks (ringex's own, such as a
        SecurityList entry's MinPriceIncrement 969), each after the member it follows there."""
        members = list(self.members)
        heads = [m.count_tag if isinstance(m, Group) else m for m in members]
        for k, tag in enumerate(ours.members):
            if isinstance(tag, int) and tag not in heads:
                before = ours.members[k - 1] if k else None
                at = heads.index(before) + 1 if before in heads else len(heads)
                members.insert(at, tag)
                heads.insert(at, tag)
        return Group(self.count_tag, tuple(members))

    @property
    def first(self) -> int:
        """The delimiter: every entry starts with it."""
        return next(iter(self.place))

    @classmethod
    def from_spec(cls, spec: list[object]) -> Group:
        """From ``fix44.json``'s ``[count tag, [members]]``."""
        count_tag, members = spec
        assert isinstance(count_tag, int) and isinstance(members, list), spec
        return cls(
            count_tag,
            tuple(cls.from_spec(m) if isinstance(m, list) else int(str(m)) for m in members),
        )


@dataclass(frozen=True, slots=True)
class GroupFault:
    """Why the groups of a message are wrong: SessionRejectReason, RefTagID, the text."""

    reason: int
    tag: int
    text: str


def check_group(pairs: list[tuple[int, bytes]], group: Group) -> GroupFault | None:
    """The first fault of ``group`` in a message's ``(tag, value)`` pairs, or None. The
    group appears at most once at its level (the dictionary refuses a repeated count tag
    before this runs); its members only in its entries."""
    k = 0
    while k < len(pairs):
        tag, value = pairs[k]
        if tag in group.tags:
            return _outside(tag)
        if tag == group.count_tag:
            end, fault = _entries(pairs, k + 1, group, int(value))
            if fault is not None:
                return fault
            for later, _ in pairs[end:]:  # an entry's field again after the group ended
                if later in group.tags or later == group.count_tag:
                    return _outside(later)
            return None
        k += 1
    return None


def _entries(
    pairs: list[tuple[int, bytes]], j: int, group: Group, declared: int
) -> tuple[int, GroupFault | None]:
    """Read ``group``'s entries from ``pairs[j]``: where they end, or the first fault."""
    first, place, nested = group.first, group.place, group.nested
    entries, last = 0, -1  # the place of the entry's member read last
    while j < len(pairs) and pairs[j][0] in group.tags:
        tag, value = pairs[j]
        at = place.get(tag)
        if tag == first:
            entries, last = entries + 1, 0
        elif at is None or entries == 0 or at <= last:  # a nested member before its count
            return j, GroupFault(
                OUT_OF_ORDER, tag, f"tag {tag} out of order in group {group.count_tag}"
            )
        else:
            last = at
        j += 1
        inner = nested.get(tag)
        if inner is not None:
            j, fault = _entries(pairs, j, inner, int(value))
            if fault is not None:
                return j, fault
    if entries != declared:
        return j, GroupFault(
            INCORRECT_COUNT,
            group.count_tag,
            f"NumInGroup {group.count_tag} says {declared}, found {entries} entries",
        )
    return j, None


def _outside(tag: int) -> GroupFault:
    return GroupFault(OUT_OF_ORDER, tag, f"tag {tag} outside its group")
