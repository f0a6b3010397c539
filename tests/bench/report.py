"""The end every benchmark shares: say whether its answers were right and which targets it
missed, write its results as JSON, and exit 1 only when an answer was wrong (a missed target
is a figure to report, not a failure of the run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def conclude(
    out: str | Path, doc: dict[str, Any], checks: dict[str, bool], missed: list[str]
) -> int:
    failed = [name for name, ok in checks.items() if not ok]
    print("\nanswer checks:", "all agree" if not failed else f"FAILED: {failed}")
    print("targets:", "all met" if not missed else "missed:\n  " + "\n  ".join(missed))
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**doc, "checks": checks, "targets_missed": missed}, indent=2))
    print(f"wrote {path}")
    return 1 if failed else 0
