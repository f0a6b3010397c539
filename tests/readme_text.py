"""README.md as the README review tests read it (reviews 104-107 and on): the text as it is
when a test runs, a claim found in it by a quote with whitespace folded (so a reworded claim
fails loudly, naming the quote), and its sections by title.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def folded(text: str, *, comments: bool = False) -> str:
    """``text`` with its whitespace folded; with ``comments``, a shell or TOML comment's
    continuation lines (a line starting ``#`` but not ``##``) joined to the line before."""
    if comments:
        text = re.sub(r"\n\s*#(?!#)", " ", text)
    return " ".join(text.split())


def says(quote: str, within: str = README, *, comments: bool = False) -> bool:
    """Whether ``within`` (the README by default) says ``quote``, whitespace folded."""
    return folded(quote, comments=comments) in folded(within, comments=comments)


def claim(
    quote: str, within: str = README, *, where: str = "README", comments: bool = False
) -> None:
    """``within`` still says ``quote``: the anchor of a claim checked, else a failure naming
    the quote and ``where`` it was looked for."""
    assert says(quote, within, comments=comments), f"{where} no longer says {quote!r}"


def section(title: str, *, level: int = 2) -> str:
    """The text of the README's heading ``title`` at ``level`` (2: ``## title``), up to the
    next heading of that level or above."""
    marks = "#" * level
    start = README.index(f"\n{marks} {title}\n")
    ends = [README.find(f"\n{'#' * n} ", start + 1) for n in range(2, level + 1)]
    ends = [end for end in ends if end != -1]
    return README[start : min(ends) if ends else len(README)]
