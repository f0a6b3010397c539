"""constraints.txt: the package versions ``make venv`` installs, the ones ``make test`` passed
with. CI's fresh venv once took msgspec 0.23 the day it came out, and mypy failed on a clean
checkout that passed here; these tests hold the file to what the README says of it."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from tests.readme_text import README, ROOT, claim

PINS = ROOT / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!-]+)$")


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(PINS.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        found = PIN.match(line)
        assert found, f"constraints.txt line {n} is not name==version: {line!r}"
        name = found[1].lower().replace("_", "-")
        assert name not in out, f"constraints.txt pins {name} twice (line {n})"
        out[name] = found[2]
    return out


def test_every_line_pins_one_exact_version_and_not_the_project() -> None:
    held = pins()
    assert "ringex" not in held, "the project itself is installed editable, never pinned"
    assert {"msgspec", "mypy", "ruff", "pytest"} <= held.keys()


def test_every_dependency_of_the_dev_install_is_pinned() -> None:
    """What pyproject asks for (for this Python) is in the file: an unpinned one would come
    at its newest release on a fresh machine, untested."""
    held = pins()
    dist = metadata.distribution("ringex")
    wanted = [Requirement(r) for r in dist.requires or []]
    missing = [
        r.name
        for r in wanted
        if (r.marker is None or r.marker.evaluate({"extra": "dev"}))
        and r.name.lower().replace("_", "-") not in held
    ]
    assert not missing, f"pyproject's {missing} are not in constraints.txt: run make lock"


def test_the_venv_has_the_pinned_versions() -> None:
    """make venv is redone when constraints.txt changes, so the suite runs on its versions."""
    wrong = {}
    for name, version in pins().items():
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # pinned for another Python (a marker), or not needed here
        if have != version:
            wrong[name] = (have, version)
    assert not wrong, f"installed, pinned: {wrong}: run make venv"


def test_the_readme_says_so_and_make_does_it() -> None:
    claim(
        "The venv gets the package versions `constraints.txt` pins, the ones `make test` last "
        "passed with",
        README,
    )
    claim("`make lock` upgrades every package to its newest release and rewrites that file", README)
    claim("constraints.txt the package versions `make venv` installs (`make lock` rewrites it)")
    if shutil.which("make") is None:
        pytest.skip("no make")
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^\$\(STAMP\): pyproject\.toml constraints\.txt$", makefile, re.M)
    lock = subprocess.run(
        ["make", "-n", "-B", "lock"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'" in lock
    assert "mv constraints.txt.new constraints.txt" in lock
