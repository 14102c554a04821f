"""The suite's runner (bench/_rca_stream.py) gives what ``causalwatch replay`` gives: the same
explanations and the same on-demand answers for the same samples, graph and targets; and a
forked stream continues exactly like one replay of prefix + rest."""

from __future__ import annotations

import csv
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from causalwatch.app.replay import Target, replay_file
from causalwatch.settings import load_settings
from causalwatch.tooling.simulate import simulate, write_scenario

BENCH = Path(__file__).resolve().parents[3] / "bench"


def _bench(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def scenario():  # type: ignore[no-untyped-def]
    # 10 nodes x 400 one-minute points: 4,000 samples, under one replay chunk
    return simulate(10, n_points=400, fault_kind="latency_shift", seed=1, fault_start=340)


def _roots(line: dict) -> list[str]:  # type: ignore[type-arg]
    return [rc["node"] for rc in line["root_causes"]]


def test_runner_equals_replay_cli(scenario, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    st = _bench("_rca_stream")
    paths = write_scenario(scenario, tmp_path)
    at = float(scenario.ts[scenario.fault_start + 5])
    tfile = tmp_path / "targets.csv"
    with tfile.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "series", "at"])
        w.writerow([scenario.target_node, scenario.target_series, repr(at)])
    out = tmp_path / "explanations.jsonl"
    settings = load_settings()
    replay_file(
        paths["samples"],
        settings=settings,
        graph_file=paths["graph"],
        explanations_out=out,
        targets_file=tfile,
        show_progress=False,
    )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    cli_auto = [
        (ln["detected_at"], ln["target"]["series"], _roots(ln))
        for ln in lines
        if not ln["incident_id"].startswith("adhoc-")
    ]
    cli_target = [_roots(ln) for ln in lines if ln["incident_id"].startswith("adhoc-")]
    assert cli_auto, "the scenario should produce automatic explanations"

    stream = st.Stream("sim", settings, list(scenario.edges), batch="replay")
    run = stream.feed(
        scenario.series_keys,
        scenario.ts,
        scenario.values.T.copy(),
        [Target(scenario.target_node, scenario.target_series, at)],
    )
    ours = [(e.at, e.series, e.roots) for e in run.explanations]
    assert ours == cli_auto
    assert run.answers == cli_target


def test_fork_equals_one_replay(scenario) -> None:  # type: ignore[no-untyped-def]
    st = _bench("_rca_stream")
    settings = load_settings()
    keys, ts, vals = scenario.series_keys, scenario.ts, scenario.values.T.copy()
    cut = 300
    whole = st.Stream("sim", settings, list(scenario.edges)).feed(keys, ts, vals)
    base = st.Stream("sim", settings, list(scenario.edges))
    first = base.feed(keys, ts[:cut], vals[:cut])
    rest = base.fork().feed(keys, ts[cut:], vals[cut:])
    again = base.fork().feed(keys, ts[cut:], vals[cut:])  # the prefix state was not touched

    def key(r):  # type: ignore[no-untyped-def]
        return [(e.at, e.series, e.roots, e.version) for e in r.explanations]

    assert key(first) + key(rest) == key(whole)
    assert key(again) == key(rest)


def test_targets_file_keeps_the_window_start(tmp_path: Path) -> None:
    """The suite writes ``--targets`` files as a user would, ``start`` column included (the
    PetShop given protocol passes the dataset's timestamp there)."""
    from causalwatch.app.replay import read_targets

    st = _bench("_rca_stream")
    path = tmp_path / "targets.csv"
    want = [Target("a", 'lat{service="a"}', 600.0, 420.5), Target("b", None, 900.0)]
    st._write_targets(want, path)
    assert read_targets(path) == want


def test_a_fork_explains_through_its_own_copy_of_the_worker_queue(scenario) -> None:  # type: ignore[no-untyped-def]
    # without the queue a fork explained inline at every alert, not by the worker's rule
    # (onset first, then at most one update per interval): PetShop's automatic answers
    # differed from one replay of the same rows
    st = _bench("_rca_stream")
    settings = load_settings()
    keys, ts, vals = scenario.series_keys, scenario.ts, scenario.values.T.copy()
    base = st.Stream("sim", settings, list(scenario.edges))
    base.feed(keys, ts[:300], vals[:300])
    fork = base.fork()
    assert fork.pipe.cores.queue is not None
    assert fork.pipe.cores.queue is not base.pipe.cores.queue
    assert fork.pipe.cores.queue.last_run_ts == base.pipe.cores.queue.last_run_ts
