"""The shared helpers of review 105's README tests (``test_review105_*.py``, README.md's
"## Operate", "## Production with systemd", "## Two commands (and a variant)" and "## Layout"
held to the code): the README read as it is when a test runs, a claim found in it by a quote
(whitespace folded), its sections, its ```sh lines and inline code spans; the Makefile read
into its variables and rules; and the fixture ``stopped``, a config of an instance that never
ran.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.readme_text import README, ROOT, claim, folded, section

MAKEFILE = (ROOT / "Makefile").read_text()


#: Re-exported for the test modules.
__all__ = ["README", "ROOT"]


def _folded(text: str) -> str:
    """``text`` with its whitespace folded, and a comment's continuation lines joined."""
    return folded(text, comments=True)


def _claim(quote: str) -> None:
    """The README still says ``quote`` (whitespace folded): the anchor of a claim checked."""
    claim(quote, comments=True)


_section = section


def _sh_lines() -> list[str]:
    """Every line of the README's ```sh blocks, its comment cut."""
    return [
        re.sub(r"(^|\s)#.*$", "", line).rstrip()
        for block in re.findall(r"```sh\n(.*?)```", README, re.S)
        for line in block.splitlines()
    ]


def _spans() -> list[str]:
    """Every inline code span of the README (not a fence), whitespace folded."""
    return [" ".join(s.split()) for s in re.findall(r"(?<!`)`([^`]+)`(?!`)", README)]


@pytest.fixture(name="stopped")
def fixture_stopped(tmp_path: Path, instance: str) -> Path:
    """A config of an instance that never ran, its var_dir in ``tmp_path``."""
    path = tmp_path / "rv105.toml"
    path.write_text(f'instance = "{instance}"\nvar_dir = "{tmp_path / "var"}"\n')
    return path


def _make_variables() -> dict[str, str]:
    return dict(re.findall(r"^([A-Z_]+)\s*[:?]?=\s*(.*?)\s*$", MAKEFILE, re.M))


def _expand(text: str) -> str:
    """``text`` with the Makefile's plain variables (``$(PY)``, ``$(VENV)``) put in."""
    plain = {k: v for k, v in _make_variables().items() if "$(shell" not in v}
    for _ in range(3):
        text = re.sub(r"\$\(([A-Z_]+)\)", lambda m: plain.get(m[1], m[0]), text)
    return text


def _make_rules() -> dict[str, tuple[list[str], str]]:
    """Each Makefile target: (its prerequisites, its recipe)."""
    rules: dict[str, tuple[list[str], str]] = {}
    lines = MAKEFILE.splitlines()
    for i, line in enumerate(lines):
        rule = re.match(r"^([$()A-Za-z][\w$().-]*)\s*:(?!=)\s*(.*)$", line)
        if rule is None or rule[1] == ".PHONY":
            continue
        recipe = []
        for body in lines[i + 1 :]:
            if not body.startswith("\t"):
                break
            recipe.append(body.strip())
        rules[rule[1]] = (rule[2].split(), "\n".join(recipe))
    return rules


RULES = _make_rules()


def _recipe(target: str) -> str:
    return _expand(RULES[target][1])
