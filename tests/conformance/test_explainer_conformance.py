"""Conformance of the explainer core: the checks every stateful core passes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from causalwatch.errors import StateError
from causalwatch.models import AnomalyEvent, Explanation
from causalwatch.schemas import explanation_json
from causalwatch.series import SeriesIndex
from explainer.core import Explainer, ExplainerConfig
from explainer.dag import DependencyGraph, Edge

STEP = 30.0
GRAPH = DependencyGraph([Edge("a", "b"), Edge("b", "c"), Edge("d", "c")])
KEYS = [f'lat{{service="{n}"}}' for n in "abcd"] + [f'err{{service="{n}"}}' for n in "abcd"]


def _stream(seed: int, n: int = 260) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shuffled multi-series stream with repeats within batches; fault on b at the end."""
    rng = np.random.default_rng(seed)
    rows, ts, xs = [], [], []
    a_prev = 0.0
    for t in range(n):
        a = rng.normal()
        b = 0.8 * a_prev + rng.normal() * 0.5 + (5.0 if t > n - 8 else 0.0)
        c = b + rng.normal(scale=0.3)
        d = rng.normal()
        vals = [a, b, c, d, *rng.normal(size=4)]
        for r, v in enumerate(vals):
            rows.append(r)
            ts.append(t * STEP + rng.uniform(0, STEP / 2))
            xs.append(v)
        a_prev = a
    return np.array(rows), np.array(ts), np.array(xs)


def _new(learn: bool = True) -> tuple[Explainer, SeriesIndex]:
    idx = SeriesIndex()
    idx.rows_for(KEYS)
    cfg = ExplainerConfig(
        step_s=STEP,
        learn_graph=learn,
        history_points=64,
        reference_points=40,
        granger_refresh_steps=40,
    )
    return Explainer(cfg, GRAPH, idx), idx


def _digest(ex: Explainer) -> str:
    h = hashlib.sha256()
    for k, v in sorted(ex.snapshot().items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def _feed(ex: Explainer, rows, ts, xs, batch: int) -> None:
    for i in range(0, rows.size, batch):
        ex.observe(rows[i : i + batch], ts[i : i + batch], xs[i : i + batch])


def test_observe_batch_equals_one_by_one() -> None:
    rows, ts, xs = _stream(0)
    a, _ = _new()
    b, _ = _new()
    _feed(a, rows, ts, xs, batch=rows.size)
    _feed(b, rows, ts, xs, batch=1)
    sa, sb = a.snapshot(), b.snapshot()
    assert sa.keys() == sb.keys()
    for k in sa:
        if k == "explainer.meta":  # JSON: incidents and learned edges, floats to 9 digits
            assert _rounded(json.loads(bytes(sa[k]))) == _rounded(json.loads(bytes(sb[k])))
            assert json.loads(bytes(sa[k]))["learned"], "the stream has learnable edges"
            continue
        np.testing.assert_allclose(sa[k], sb[k], rtol=1e-9, atol=1e-12, err_msg=k)


def _rounded(obj: object) -> object:
    if isinstance(obj, float):
        return float(f"{obj:.9g}")
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    return obj


def test_seeded_determinism_of_explanations() -> None:
    rows, ts, xs = _stream(1)
    outs = []
    for _ in range(2):
        ex, _ = _new()
        _feed(ex, rows, ts, xs, batch=97)
        e = Explanation.from_result(ex.explain("c", KEYS[2], at_ts=float(ts.max())))
        outs.append(asdict(e))
    assert outs[0] == outs[1]
    assert outs[0]["root_causes"][0]["node"] == "b"


def test_explain_and_open_incidents_are_read_only() -> None:
    rows, ts, xs = _stream(2)
    ex, _ = _new()
    _feed(ex, rows, ts, xs, batch=50)
    before = _digest(ex)
    ex.explain("c", None, at_ts=float(ts.max()))
    ex.open_incidents()
    _ = ex.graph
    ex.learned_edges()
    assert _digest(ex) == before


def test_snapshot_round_trip_continues_identically() -> None:
    rows, ts, xs = _stream(3)
    half = rows.size // 2
    a, idx = _new()
    _feed(a, rows[:half], ts[:half], xs[:half], batch=64)
    ev = AnomalyEvent(2, KEYS[2], "c", float(ts[half - 1]), 0.0, 0.0, 0.9, 70.0)
    a.on_anomalies([ev], now_ts=float(ts[half - 1]))
    snap = a.snapshot()
    b = Explainer.restore(snap, a.config, GRAPH, idx)
    assert _digest(b) == _digest(a)
    assert b.open_incidents() == a.open_incidents()
    assert b.learned_edges() == a.learned_edges()
    _feed(a, rows[half:], ts[half:], xs[half:], batch=64)
    _feed(b, rows[half:], ts[half:], xs[half:], batch=64)
    assert _digest(b) == _digest(a)
    at = float(ts.max())
    ea, eb = (Explanation.from_result(x.explain("c", KEYS[2], at)) for x in (a, b))
    assert explanation_json(ea) == explanation_json(eb)


def test_restore_rejects_other_schema_or_shape() -> None:
    a, idx = _new()
    snap = a.snapshot()
    bad = dict(snap, schema_version=np.array([999]))
    with pytest.raises(StateError, match="schema_version 999"):
        Explainer.restore(bad, a.config, GRAPH, idx)
    other = ExplainerConfig(step_s=STEP, history_points=128)
    with pytest.raises(StateError, match="history_points"):
        Explainer.restore(snap, other, GRAPH, idx)


def test_memory_is_bounded_by_series_and_history_points() -> None:
    ex, _ = _new()
    rows, ts, xs = _stream(4, n=200)
    _feed(ex, rows, ts, xs, batch=200)
    size1 = sum(v.nbytes for v in ex.snapshot().values())
    rows2, ts2, xs2 = _stream(5, n=600)
    _feed(ex, rows2, ts2 + ts.max() + STEP, xs2, batch=200)
    size2 = sum(v.nbytes for v in ex.snapshot().values())
    # the only growth allowed is the bounded incident/learned-edge metadata
    assert size2 <= size1 * 1.05 + 4096


def test_a_snapshot_written_before_the_core_split_restores_losslessly() -> None:
    """``data/explainer_snapshot_v1.npz`` was written by the pre-split explainer (commit
    4414742) after the first half of ``_stream(3)`` and one incident: the split code reads
    it, writes it back array for array (same dtypes, bytes) and goes on from it. The one
    format change since: the Granger learner's single open-bin accumulator
    (``acc_sum``/``acc_cnt``) became open-bin entries (the low watermark,
    :mod:`explainer.learning`); the old accumulator must come back as exactly those entries."""
    with np.load(Path(__file__).parent / "data" / "explainer_snapshot_v1.npz") as f:
        old = {k: f[k] for k in f.files}
    a, idx = _new()
    b = Explainer.restore(old, a.config, GRAPH, idx)
    again = b.snapshot()
    replaced = {"explainer.acc_sum", "explainer.acc_cnt"}
    assert [k for k in again if k in old] == [k for k in old if k not in replaced]
    for k in old.keys() - replaced:
        assert again[k].dtype == old[k].dtype, k
        np.testing.assert_array_equal(again[k], old[k], err_msg=k)
    held = np.flatnonzero(old["explainer.acc_cnt"] > 0)
    np.testing.assert_array_equal(again["explainer.pending_rb"][0], held)
    np.testing.assert_array_equal(again["explainer.pending_sc"][0], old["explainer.acc_sum"][held])
    np.testing.assert_array_equal(again["explainer.pending_sc"][1], old["explainer.acc_cnt"][held])
    (summary,) = b.open_incidents()
    assert summary.incident_id == "inc-f1341ee44051" and summary.version == 1
    assert ("a", "b") in {(e.cause, e.effect) for e in b.learned_edges()}
    rows, ts, xs = _stream(3)
    half = rows.size // 2
    _feed(b, rows[half:], ts[half:], xs[half:], batch=64)
    assert b.explain("c", KEYS[2], float(ts.max())).root_causes[0].node == "b"


_EXPLAIN_IN_A_PROCESS = """
import sys
from tests.conformance.test_explainer_conformance import KEYS, _feed, _new, _stream
from causalwatch.models import Explanation
from causalwatch.schemas import explanation_json
out = []
for seed in range(6):
    rows, ts, xs = _stream(seed)
    ex, _ = _new()
    _feed(ex, rows, ts, xs, batch=97)
    for node, key in (("c", KEYS[2]), ("b", KEYS[1])):
        e = Explanation.from_result(ex.explain(node, key, float(ts.max())))
        out.append(explanation_json(e))
sys.stdout.write("\\n".join(out))
"""


def test_explanations_do_not_depend_on_the_string_hash_seed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A restarted process (another ``PYTHONHASHSEED``) explains the same data the same way:
    nothing in a ranking may follow the iteration order of a set of node names."""
    root = Path(__file__).resolve().parents[2]
    outs = []
    for seed in ("1", "2", "3"):
        monkeypatch.setenv("PYTHONHASHSEED", seed)
        done = subprocess.run(
            [sys.executable, "-c", _EXPLAIN_IN_A_PROCESS],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outs.append(done.stdout)
    assert outs[0].count("\n") == 11
    assert outs[0] == outs[1] == outs[2]


def _check_answer(e: Explanation) -> None:
    """The answer contract every explainer result keeps."""
    assert e.verdict in ("root_cause", "inconclusive") and e.verdict_reason
    assert e.method in ("scm", "star", "robust_z", "none")
    shares = [rc.share for rc in e.root_causes]
    assert all(0.0 <= s <= 1.0 for s in shares)
    assert 0.0 <= e.unexplained <= 1.0
    assert sum(shares) + e.unexplained == pytest.approx(1.0, abs=1e-9)
    assert all(0.0 <= o.share <= 1.0 for o in e.opposing)
    if e.verdict == "root_cause":
        assert e.root_causes and e.root_causes[0].evidence["mechanism_change"]["changed"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("with_graph", [True, False])
def test_every_explanation_keeps_the_answer_contract(seed: int, with_graph: bool) -> None:
    rows, ts, xs = _stream(seed)
    ex, _ = _new(learn=False)
    if not with_graph:
        ex.set_graph(DependencyGraph([], list("abcd")))
    _feed(ex, rows, ts, xs, batch=rows.size)
    end = float(ts.max())
    for key in KEYS:
        node = key.split('"')[1]
        for at in (end, end - 10 * STEP, end - 60 * STEP):
            _check_answer(Explanation.from_result(ex.explain(node, key, at_ts=at)))
