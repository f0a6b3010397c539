"""A process's edge run as ``python -m procs.<name>.main`` (systemd units, an operator) runs
``main()`` from its ``if __name__ == "__main__"`` block, so everything the module defines
must come before that block. The router's ``_whole_seq`` came after it: the supervisor
imports the module (``held.py``) and never saw it, but a router under systemd stopped with a
NameError at its first batch of matcher events."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _is_main_guard(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and isinstance(node.test.left, ast.Name)
        and node.test.left.id == "__name__"
    )


def test_nothing_is_defined_after_the_main_guard() -> None:
    late = {}
    for path in sorted((ROOT / "procs").glob("**/*.py")):
        body = ast.parse(path.read_text()).body
        guards = [k for k, node in enumerate(body) if _is_main_guard(node)]
        if guards and (after := [type(n).__name__ for n in body[guards[0] + 1 :]]):
            late[str(path.relative_to(ROOT))] = after
    assert not late, f"defined after the __main__ guard: {late}"
