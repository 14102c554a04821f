"""Time defaults at 1 s and 300 s sampling: the points-based defaults against the old ones
in seconds (alert gap 900 s, incident window 900 s), through the replay path.

Simulated faults (``causalwatch.tooling.simulate``, ``--nodes`` services, the given graph),
each with an early alert: a 6-sigma spike on the root's series at point 60 (a warm-up
blip). Per case: whether the root's own series alerts during the fault, whether the fault is
explained (an explanation detected between its start and 10 steps after its end), and
whether the root is the top cause of the last such explanation on the target node (any
target when the target node has none). Nothing here is tuned: both settings are fixed.

Run: ``nice -n 10 python bench/step_defaults.py`` (about two minutes).
"""

from __future__ import annotations

import argparse

import numpy as np

from causalwatch.app.pipeline import build_pipeline
from causalwatch.app.replay import replay_batches
from causalwatch.models import Explanation, SampleBatch
from causalwatch.settings import Settings
from causalwatch.tooling.simulate import simulate
from explainer.dag import DependencyGraph, Edge

OLD = {"detector": {"min_alert_gap_s": 900.0}, "explainer": {"incident_window_s": 900.0}}


def case(step_s: float, seed: int, nodes: int, settings: Settings) -> tuple[bool, bool, bool]:
    sc = simulate(nodes, n_points=900, step_s=step_s, seed=seed, fault_kind="latency_shift")
    root_key = f'{sc.fault_metric}{{service="{sc.roots[0]}"}}'
    row = sc.series_keys.index(root_key)
    values = sc.values.copy()
    values[row, 60] += 6 * np.std(values[row, :600])
    pipe = build_pipeline(
        settings, "all", graph=DependencyGraph([Edge(a, b) for a, b in sc.edges]), replay=True
    )
    got: list[Explanation] = []
    root_alerts: list[float] = []

    def on_step(out) -> None:  # type: ignore[no-untyped-def]
        got.extend(out.explanations)
        root_alerts.extend(e.ts for e in out.events if e.series_key == root_key)

    def batches():  # type: ignore[no-untyped-def]
        for k in range(sc.n_points):
            ts = [float(sc.ts[k])] * len(sc.series_keys)
            yield SampleBatch.from_lists(sc.series_keys, ts, values[:, k].tolist()), []

    replay_batches(pipe, batches(), on_step=on_step)
    end = sc.fault_end_ts + 10 * step_s
    alerted = any(sc.fault_start_ts <= t < sc.fault_end_ts for t in root_alerts)
    fault = [e for e in got if sc.fault_start_ts <= e.detected_at <= end]
    on_target = [e for e in fault if e.target.node == sc.target_node] or fault
    top1 = bool(on_target and on_target[-1].root_causes) and (
        on_target[-1].root_causes[0].node == sc.roots[0]
    )
    return alerted, bool(fault), top1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--nodes", type=int, default=10)
    args = ap.parse_args()
    print("| step | defaults | cases | root alerted in fault | fault explained | top-1 |")
    print("|---:|---|---:|---:|---:|---:|")
    for step in (1.0, 300.0):
        for name, over in (("points (this branch)", {}), ("old, in seconds", OLD)):
            rows = [case(step, s, args.nodes, Settings(**over)) for s in range(args.seeds)]
            a, e, t = (sum(r[i] for r in rows) for i in range(3))
            n = len(rows)
            print(f"| {step:g} s | {name} | {n} | {a / n:.2f} | {e / n:.2f} | {t / n:.2f} |")


if __name__ == "__main__":
    main()
