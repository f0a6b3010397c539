"""The collector policy each process sets once ready (``procs/common/gc_policy.py``).

Each case runs in a child interpreter: the policy changes the whole interpreter, and the test
process must keep CPython's own collector. Counts, not times: which generations collected
while a heap grew, and whether young garbage cycles were still freed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from config import load_profile
from config.schema import GcConfig
from procs.common.gc_policy import NEVER

ROOT = Path(__file__).resolve().parents[3]

#: In the child: settle (unless told not to), then grow a heap of 300k objects that live on
#: (a book filling up) while making and dropping 20k small cycles (asyncio's, exceptions');
#: report the thresholds, the frozen count and the collections per generation.
CHILD = """
import gc, json, sys
from config.schema import GcConfig
from procs.common import gc_policy
args = json.loads(sys.argv[1])
startup = [[i] for i in range(50_000)]  # what recovery built
if args is not None:
    gc_policy.settle(GcConfig(**args))
runs = {0: 0, 1: 0, 2: 0}
freed = [0]
def seen(phase, info):
    if phase == "stop":
        runs[info["generation"]] += 1
        freed[0] += info["collected"]
gc.callbacks.append(seen)
kept = []
for i in range(300_000):
    kept.append([i])
    if i % 15 == 0:
        a, b = [], []
        a.append(b)
        b.append(a)  # a cycle, dropped at once: only the collector frees it
gc.callbacks.remove(seen)
print(json.dumps({"threshold": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "runs": runs, "freed": freed[0]}))
"""


def grow(settings: dict[str, Any] | None) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(settings)],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_cpythons_own_collector_walks_the_growing_heap_again_and_again() -> None:
    """The baseline the policy is for: without it, full collections run as the heap grows."""
    result = grow(None)
    assert result["threshold"] == [700, 10, 10]
    assert result["runs"]["2"] >= 1, result


def test_the_default_policy_freezes_startup_and_never_starts_a_full_collection() -> None:
    result = grow({})
    assert result["threshold"] == [700, 10, NEVER]
    assert result["frozen"] >= 50_000, "what startup built is in the permanent generation"
    assert result["runs"]["2"] == 0, result
    assert result["runs"]["0"] > 0 and result["runs"]["1"] > 0, "the young ones still run"
    assert result["freed"] >= 20_000 * 2 * 0.9, "young garbage cycles are still freed"


def test_threshold2_brings_full_collections_back_and_freeze_can_be_off() -> None:
    result = grow({"freeze": False, "threshold0": 700, "threshold1": 10, "threshold2": 10})
    assert result["threshold"] == [700, 10, 10]
    assert result["frozen"] == 0
    assert result["runs"]["2"] >= 1, result


def test_gc_section_is_strict_and_every_profile_loads_it(tmp_path: Path) -> None:
    for name in ("dev", "test", "latency"):
        assert load_profile(name).gc == GcConfig()
    bad = tmp_path / "bad.toml"
    bad.write_text("[gc]\nthreshold3 = 5\n")
    with pytest.raises(ValueError, match="unknown field `threshold3`"):
        load_profile(str(bad))
    bad.write_text("[gc]\nthreshold0 = 0\n")
    with pytest.raises(ValueError, match=r"\$\.gc\.threshold0"):
        load_profile(str(bad))
    good = tmp_path / "good.toml"
    good.write_text("[gc]\nfreeze = false\nthreshold2 = 10\n")
    assert load_profile(str(good)).gc == GcConfig(freeze=False, threshold2=10)
