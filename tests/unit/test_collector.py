"""The role process's garbage-collector policy (causalwatch/app/collector.py).

Each check runs in a fresh interpreter: the policy is process-wide, and the test process's
own collector must stay as pytest set it."""

from __future__ import annotations

import json
import subprocess
import sys

from causalwatch.app.collector import GEN0_THRESHOLD

PROBE = """
import gc, json
before = {"thresholds": gc.get_threshold(), "frozen": gc.get_freeze_count()}
from causalwatch.app.collector import tune_collector
tune_collector()
class Cycle:
    pass
a = Cycle(); b = Cycle(); a.other, b.other = b, a
del a, b
collected = gc.collect()
print(json.dumps({"before": before, "thresholds": gc.get_threshold(),
                  "frozen": gc.get_freeze_count(), "collected": collected}))
"""


def _probe() -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    return dict(json.loads(out.stdout))


def test_start_up_objects_frozen_and_generation_0_widened() -> None:
    got = _probe()
    before = got["before"]
    assert isinstance(before, dict)
    assert before["frozen"] == 0
    assert got["thresholds"] == [GEN0_THRESHOLD, *before["thresholds"][1:]]
    assert isinstance(got["frozen"], int) and got["frozen"] > 10_000  # the imported modules


def test_cycles_are_still_collected() -> None:
    assert _probe()["collected"] >= 2  # the two objects of the cycle made after tuning


def test_only_the_process_entry_tunes() -> None:
    """``serve(block=False)`` runs a role in a thread of someone else's process: the call
    is on the blocking branch only."""
    import inspect

    from causalwatch.app import service

    src = inspect.getsource(service.serve)
    head, _, tail = src.partition("tune_collector()")
    assert tail, "serve no longer tunes the collector"
    assert head.rstrip().endswith("if block:")
