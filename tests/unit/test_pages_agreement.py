"""Pages on agreement through the pipeline: what receivers get for one outlier, for two
related nodes, during warm-up, and what replay reports (the rule itself:
tests/unit/explainer/test_incidents.py)."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from causalwatch.app.pipeline import Adapters, Pipeline, build_pipeline
from causalwatch.app.replay import replay_batches
from causalwatch.models import AnomalyEvent, Explanation, RawRecord, SampleBatch
from causalwatch.settings import Settings
from explainer.dag import DependencyGraph, Edge

STEP = 60.0
NODES = ("db", "api", "web", "queue")
GRAPH = DependencyGraph([Edge("db", "api"), Edge("api", "web")], list(NODES))  # queue: alone
KEYS = [f'lat{{service="{n}"}}' for n in NODES]


class FakeOutbox:
    def __init__(self) -> None:
        self.got: list[tuple[Explanation, tuple[str, float]]] = []

    def enqueue(
        self,
        explanations: Sequence[Explanation],
        now: float | None = None,
        *,
        pages: Mapping[str, tuple[str, float]] | None = None,
    ) -> int:
        assert pages is not None
        self.got.extend((e, pages[e.id]) for e in explanations)
        return len(explanations)


class FakeResults:
    def __init__(self) -> None:
        self.got: list[Explanation] = []

    def publish(self, explanations: Sequence[Explanation]) -> int:
        self.got.extend(explanations)
        return len(explanations)


def _values(n: int, spikes: Mapping[int, Sequence[str]], seed: int = 0) -> np.ndarray:
    """``[steps, nodes]``: noise around a level, ``+40`` at the given steps on the nodes."""
    rng = np.random.default_rng(seed)
    x = 10.0 + rng.normal(0.0, 1.0, size=(n, len(NODES)))
    for k, nodes in spikes.items():
        for node in nodes:
            x[k, NODES.index(node)] += 40.0
    return x


def _stream(x: np.ndarray) -> tuple[FakeOutbox, FakeResults, Pipeline]:
    """Feed ``x`` through the live ``all`` stage (inline worker) as JSON records."""
    outbox, results = FakeOutbox(), FakeResults()
    pipe = build_pipeline(
        Settings(),
        "all",
        Adapters(outbox=outbox, results=results),
        graph=GRAPH,
        replay=True,
        formats={"m": "json"},
    )
    for k in range(x.shape[0]):
        body = [
            {"name": "lat", "labels": {"service": n}, "timestamp": k * STEP, "value": x[k, i]}
            for i, n in enumerate(NODES)
        ]
        pipe.stage.handle([RawRecord("m", 0, k, json.dumps(body).encode())], time.time())
    return outbox, results, pipe


def test_a_single_outlier_is_published_and_watched_not_paged() -> None:
    outbox, results, pipe = _stream(_values(300, {250: ["web"]}))
    assert pipe.stats.alerts_total >= 1
    assert results.got  # explained and visible
    assert outbox.got == [] and sum(pipe.stats.pages.values()) == 0  # nothing paged
    watching, paged, watched = pipe.cores.explainer.incident_counts()
    assert paged == 0 and watching + watched >= 1


def test_two_related_nodes_at_once_page_once() -> None:
    outbox, _results, pipe = _stream(_values(300, {250: ["db", "web"]}))
    kinds = Counter(kind for _, (kind, _sev) in outbox.got)
    assert kinds["page"] == 1 and kinds["watch"] == 0
    assert pipe.stats.pages["page"] == 1
    assert {e.incident_id for e, _ in outbox.got} == {outbox.got[0][0].incident_id}
    assert pipe.cores.explainer.incident_counts()[1] == 1


def test_nothing_alerts_or_pages_during_warm_up() -> None:
    # spikes on every node during the first 30 points (warm-up): no alert, no incident
    outbox, results, pipe = _stream(_values(40, {k: NODES for k in (5, 12, 20, 28)}))
    assert pipe.stats.alerts_total == 0 and results.got == [] and outbox.got == []
    assert pipe.cores.explainer.incident_counts() == (0, 0, 0)


def test_replay_counts_pages_and_incidents_watched_but_not_paged() -> None:
    x = _values(300, {200: ["queue"], 250: ["db", "web"]})
    pipe = build_pipeline(Settings(), "all", graph=GRAPH, replay=True)
    batches = [
        (SampleBatch(list(KEYS), np.full(len(KEYS), k * STEP), x[k], np.full(len(KEYS), -1)), [])
        for k in range(x.shape[0])
    ]
    kinds: Counter[str] = Counter()
    summary = replay_batches(pipe, batches, on_step=lambda out: kinds.update(
        k for k, _ in out.pages.values()
    ))  # fmt: skip
    assert summary.incidents_paged == 1 and summary.incidents_watched >= 1
    assert kinds["page"] == 1 and kinds["watch"] >= 1
    assert summary.explanations == sum(kinds.values())


def test_the_page_kind_is_decided_when_built_not_when_published() -> None:
    """The threaded worker publishes outside the lock; meanwhile a backlog's data time can
    close the incident. The kind decided at build time stands (it still pages)."""
    outbox, _results, pipe = _stream(_values(240, {}))
    exp = pipe.cores.explainer
    idx = pipe.cores.index
    t = 239 * STEP
    events = [
        AnomalyEvent(idx.get(KEYS[NODES.index(n)]), KEYS[NODES.index(n)], n, t, 50.0, 10.0,
                     1 - 1e-9, 90.0)
        for n in ("db", "web")
    ]  # fmt: skip
    grouped = exp.group(events)
    exps = pipe.stage._explain_touched({k: sorted(v) for k, v in grouped.touched.items()})
    assert exps
    exp.close_stale(t + 1e6)  # closed before the worker publishes
    pipe.stage._publish(exps)
    assert [k for _, (k, _s) in outbox.got][:1] == ["page"]
    assert pipe.stats.pages["page"] == 1
