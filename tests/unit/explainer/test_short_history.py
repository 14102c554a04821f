"""Short history: a user who just started, 5 minutes of 1 s data before a fault.

The explainer's windows count points of the inferred step (``reference_points``,
``anomaly_points``, ``history_points``), so nothing is configured for 1 s data; the on-demand
explanation goes through the replay path (``explain --input``: decode -> detector ->
explainer) on a :mod:`causalwatch.tooling.simulate` scenario written to disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from causalwatch.app.replay import Target, explain_offline
from causalwatch.settings import load_settings
from causalwatch.tooling.simulate import simulate, write_scenario

HISTORY_S = 300  # normal 1 s points before the fault


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_five_minutes_of_1s_data_before_a_fault_explain_it(tmp_path: Path, seed: int) -> None:
    sc = simulate(
        10, n_points=HISTORY_S + 60, step_s=1.0, fault_start=HISTORY_S, fault_len=60, seed=seed
    )
    paths = write_scenario(sc, tmp_path)
    at = float(sc.ts[sc.fault_start + 9])
    exp, err = explain_offline(
        paths["samples"],
        Target(sc.target_node, sc.target_series, at),
        settings=load_settings(),
        graph_file=paths["graph"],
    )
    assert err is None and exp is not None
    assert exp.root_causes[0].node == sc.roots[0], [rc.node for rc in exp.root_causes]
    assert exp.method == "scm" and exp.verdict == "root_cause"
    assert sum(rc.share for rc in exp.root_causes) + exp.unexplained == pytest.approx(1.0)
