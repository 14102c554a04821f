"""The root-cause suite's scoring rules and peers (bench/_rca_scoring.py, bench/_peers_rca.py)
on small hand-made inputs whose answers are known."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"


def _bench(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def sc() -> ModuleType:
    return _bench("_rca_scoring")


@pytest.fixture(scope="module")
def peers() -> ModuleType:
    return _bench("_peers_rca")


def _e(at: float, node: str, roots: list[str], series: str = "s") -> object:
    return _bench("_rca_stream").Expl(at, node, series, roots, 50.0, "inc", 1)


def test_pooled_ranking_sums_inverse_ranks(sc: ModuleType) -> None:
    expls = [_e(0, "fe", ["a", "b", "c"]), _e(1, "fe", ["b", "a"]), _e(2, "fe", ["c"])]
    # a: 1 + 1/2, b: 1/2 + 1, c: 1/3 + 1 -> c 1.33 < a = b 1.5 (ties by name)
    assert sc.pooled_ranking(expls) == ["a", "b", "c"]
    assert sc.pooled_ranking([]) == []


def test_in_window_is_half_open(sc: ModuleType) -> None:
    expls = [_e(t, "fe", ["x"]) for t in (9.0, 10.0, 19.0, 20.0)]
    assert [e.at for e in sc.in_window(expls, 10.0, 20.0)] == [10.0, 19.0]


def test_ac_and_avg5(sc: ModuleType) -> None:
    ranked = ["a", "b", "c", "d"]
    assert [sc.ac_at(ranked, "c", k) for k in (1, 2, 3)] == [0.0, 0.0, 1.0]
    assert sc.avg_at5(ranked, "c") == pytest.approx(3 / 5)
    assert sc.avg_at5(ranked, "z") == 0.0
    assert sc.avg_at5([], "a") == 0.0


def test_latest_for_node_prefers_own_series(sc: ModuleType) -> None:
    expls = [
        _e(1, "site", ["a"], series="lat_avg"),
        _e(2, "site", ["b"], series="lat_p99"),
        _e(3, "other", ["c"], series="lat_avg"),
    ]
    assert sc.latest_for_node(expls, "site", "lat_avg").roots == ["a"]
    assert sc.latest_for_node(expls, "site", "nope").roots == ["b"]
    assert sc.latest_for_node(expls, "absent", "lat_avg") is None


def test_quiet_mask(sc: ModuleType) -> None:
    ts = np.array([0.0, 1000.0, 4000.0, 5000.0, 9000.0])
    # injections at 2000 and 6000: quiet needs >= 1800 s after the last and >= 300 s before
    # the next; 0 and 1000 lie before the first (and 1000 s before it), 4000 is 2000 s after
    # the first and 2000 s before the second, 5000 only 1000 s before it, 9000 3000 s after
    mask = sc.quiet_mask(ts, [2000.0, 6000.0])
    assert mask.tolist() == [True, True, True, True, True]
    mask = sc.quiet_mask(np.array([2100.0, 5800.0, 6100.0, 7900.0]), [2000.0, 6000.0])
    assert mask.tolist() == [False, False, False, True]


def test_loso_picks_on_the_others(sc: ModuleType) -> None:
    scores = {
        "v1": {"a": 1.0, "b": 0.0, "c": 0.0},
        "v2": {"a": 0.0, "b": 0.6, "c": 0.6},
    }
    out = {r.held_out: r for r in sc.loso(scores)}
    assert (out["a"].chosen, out["a"].score) == ("v2", 0.0)  # in-sample best v1 -> 1.0
    assert (out["a"].best_in_sample, out["a"].best_score) == ("v1", 1.0)
    assert (out["b"].chosen, out["b"].score) == ("v1", 0.0)  # a+c: v1 0.5 vs v2 0.3
    assert (out["c"].chosen, out["c"].score) == ("v1", 0.0)


def _shift_case(seed: int = 0) -> tuple[np.ndarray, list[str], int]:
    """Three nodes, two series each; node ``db`` jumps by 8 sd at row 150 and ``api``
    (its caller) by 3 sd; ``cache`` stays normal."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 1.0, size=(200, 6))
    x[150:, 0] += 8.0
    x[150:, 2] += 3.0
    return x, ["db", "db", "api", "api", "cache", "cache"], 150


@pytest.mark.parametrize("name", ["BARO", "NSigma", "z-score change"])
def test_peers_rank_the_shifted_node_first(peers: ModuleType, name: str) -> None:
    x, nodes, start = _shift_case()
    ranked = peers.PEERS[name](x, nodes, start)
    assert ranked[:2] == ["db", "api"]


def test_bocpd_finds_the_onset(peers: ModuleType) -> None:
    x, _nodes, _start = _shift_case(1)
    assert abs(peers.bocpd_onset(x, 100, 200) - 150) <= 1


def test_peers_survive_constant_and_missing_columns(peers: ModuleType) -> None:
    x, nodes, start = _shift_case(2)
    x[:, 4] = 1.0  # constant before and after
    x[:100, 5] = np.nan  # a series that starts late
    ranked = peers.baro(x, nodes, start)
    assert ranked[0] == "db"


def test_variants_without_a_loso_system_report_and_exit_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--variant`` runs of systems outside the leave-one-system-out set (``--systems
    dowhy``) print their tables and say there is nothing to leave out (it used to end in a
    ValueError after the tables)."""
    import json

    res = {
        "variants": {v: {"cases": {}, "overrides": {}} for v in ("a", "b")},
        "peers": {},
        "truth": {},
        "meta": {},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    assert _bench("rca_suite").main(["--from-results", str(path)]) == 0
    assert "nothing to leave out" in capsys.readouterr().out
