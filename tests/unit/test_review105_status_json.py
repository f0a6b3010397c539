"""Review 105: README.md's "## Operate" held to ``ringex status --json`` mechanically, both
ways: the keys the README says it prints are the keys it prints, and every key it prints is
named in Operate.

Convention (review 104's, shared helpers in ``readme_operate_claims``): the README is read as
it is when the test runs, and each claim is found in it by a quote (whitespace folded), so a
claim that is reworded fails here, loudly, rather than being checked no longer. A claim checked
and found right is a plain test. Nothing here starts a server or a process: ``ringex status``
runs in-process against a config of a temporary directory whose instance never ran (its status
file written by the test where one is wanted). One disagreement was found, the README's to
mend: Operate named most keys of ``status --json`` nowhere. It was pinned as a strict xfail and
mended in the same change.
"""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

import procs.cli
from config import load_profile
from procs.common.run_files import status_path
from shm.liveness import process_start
from tests.unit.readme_operate_claims import (
    ROOT,
    _claim,
    _folded,
    _section,
    fixture_stopped,  # noqa: F401  (the fixture stopped)
)

# == 6. `ringex status --json` ===================================================================


def _dict_keys(node: ast.AST) -> list[str]:
    assert isinstance(node, ast.Dict)
    return [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]


def _function(path: str, name: str) -> ast.FunctionDef:
    tree = ast.parse((ROOT / path).read_text())
    return next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name)


def _supervisor_keys() -> tuple[list[str], list[str]]:
    """The keys procs/supervisor/main.py ``write_status`` writes: the document's, and each
    process's (read from its source)."""
    doc = next(
        n.value
        for n in ast.walk(_function("procs/supervisor/main.py", "write_status"))
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Dict)
    )
    assert isinstance(doc, ast.Dict)
    processes = doc.values[_dict_keys(doc).index("processes")]
    assert isinstance(processes, ast.ListComp)
    return _dict_keys(doc), _dict_keys(processes.elt)


def _printed(stopped: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """What ``ringex status --json`` prints of ``stopped``'s instance, whose status file
    holds what a supervisor writes while it stops: one process, down (this process's pid is
    alive, but the file says the process is not), ``uptime_s`` 7 as of its last write."""
    cfg = load_profile(str(stopped))
    top, per_process = _supervisor_keys()
    values: dict[str, Any] = {
        "instance": cfg.instance, "profile": str(stopped), "supervisor_pid": None,
        "supervisor_started": None, "state": "stopping", "role": "primary",
        "prestarted": False, "reason": "", "updated_ns": 1, "metrics_url": "",
        "name": "router", "pid": os.getpid(), "started": process_start(os.getpid()),
        "alive": False, "ready": True, "cpus": [1], "restarts": 2,
        "heartbeat_age_s": None, "uptime_s": 7.0,
    }  # fmt: skip
    status = {k: values[k] for k in top if k != "processes"}
    status["processes"] = [{k: values[k] for k in per_process}]
    status_path(cfg).parent.mkdir(parents=True)
    status_path(cfg).write_text(json.dumps(status))
    capsys.readouterr()
    assert procs.cli.main(["status", "--json", "--config", str(stopped)]) == 0
    printed: dict[str, Any] = json.loads(capsys.readouterr().out)
    return printed


def _readme_process_keys() -> list[str]:
    """The keys README Operate's sentence "Per process `status --json` shows ..." lists."""
    operate = _folded(_section("Operate"))
    listed = re.search(r"Per process `status --json` shows (.*?)\. ", operate)
    assert listed is not None
    return [w for w in re.findall(r"\w+", re.sub(r"\([^()]*\)", "", listed[1])) if w != "and"]


def _documented_status_keys() -> set[str]:
    """The ``status --json`` keys README Operate names: that sentence's, and any written as
    a key in code (`` `serves_clients: false` ``, `` `reason:` ``)."""
    operate = _folded(_section("Operate"))
    return set(_readme_process_keys()) | set(re.findall(r"`(\w+)(?::[^`]*)?`", operate))


README_TOP_KEYS = ["serves_clients"]


def test_the_status_json_keys_the_readme_names_are_printed(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README Operate: "Per process `status --json` shows pid, alive, ready, cpus,
    `restarts` ..., `uptime_s` (0 while down) and `heartbeat_age_s` (...; `null` for one that
    reads none)" and "`--json` says `serves_clients: false`" (for a standby, or while an
    instance starts or stops): procs/cli.py _print_status prints those keys, with the
    supervisor's per-process record (procs/supervisor/main.py write_status)."""
    _claim(
        "Per process `status --json` shows pid, alive, ready, cpus, `restarts` (since the "
        "supervisor started; the exit that stopped the instance is not one), `uptime_s` (0 "
        "while down) and `heartbeat_age_s`"
    )
    _claim("`null` for one that reads none)")
    _claim(
        "and `--json` says `serves_clients: false`, as it does while an instance starts or stops)"
    )
    printed = _printed(stopped, capsys)
    process = printed["processes"][0]
    assert _readme_process_keys() == [
        "pid", "alive", "ready", "cpus", "restarts", "uptime_s", "heartbeat_age_s",
    ]  # fmt: skip
    assert [k for k in _readme_process_keys() if k not in process] == []
    assert [k for k in README_TOP_KEYS if k not in printed] == []
    assert process["uptime_s"] == 0 and process["alive"] is False  # down: 0
    assert process["heartbeat_age_s"] is None
    assert printed["serves_clients"] is False  # stopping


def test_a_never_run_instance_prints_the_keys_a_supervisor_writes(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """procs/cli.py _print_status: an instance that never ran prints the same document
    (its stand-in holds "the keys the supervisor writes, all there") plus what status adds
    (``rings``, ``endpoints``, ``serves_clients``); its first line in text says the state
    and the role, as README Operate says ("its first line says the state and the role")."""
    _claim("its first line says the state and the role")
    top, _ = _supervisor_keys()
    assert procs.cli.main(["status", "--json", "--config", str(stopped)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == [*top, "rings", "endpoints", "serves_clients"]
    assert procs.cli.main(["status", "--config", str(stopped)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"instance {load_profile(str(stopped)).instance}: stopped (primary)"


def test_every_status_json_key_is_documented(
    stopped: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """procs/cli.py _print_status and procs/supervisor/main.py write_status, the other way:
    every key ``ringex status --json`` prints (what a monitoring script reads) is named in
    README Operate, in its sentence of a process's keys or written as a key (`` `state` ``),
    so a script's author need not read the code for the keys."""
    printed = _printed(stopped, capsys)
    documented = _documented_status_keys()
    undocumented = [k for k in printed if k not in documented]
    undocumented += [k for k in printed["processes"][0] if k not in documented]
    assert undocumented == []
