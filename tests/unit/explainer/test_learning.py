"""GrangerLearner's low watermark: a backlog read partition by partition learns what the same
samples in time order learn; in time order the bins close as with one open bin."""

from __future__ import annotations

import numpy as np
import pytest

from causalwatch.series import SeriesIndex
from explainer.config import ExplainerConfig
from explainer.dag import DependencyGraph
from explainer.learning import GrangerLearner

GROUPS, PER, T, K, STEP = 4, 3, 360, 12, 60.0


def _data() -> np.ndarray:
    """``X[t, series]``: group g's series i is driven by group g-1's series i one bin back."""
    rng = np.random.default_rng(7)
    X = np.zeros((T, GROUPS * PER))
    X[:, :PER] = rng.normal(size=(T, PER))
    for g in range(1, GROUPS):
        cause = np.vstack([np.zeros((1, PER)), X[:-1, (g - 1) * PER : g * PER]])
        X[:, g * PER : (g + 1) * PER] = 0.9 * cause + 0.5 * rng.normal(size=(T, PER))
    return X


def _learner() -> tuple[GrangerLearner, np.ndarray]:
    idx = SeriesIndex()
    keys = [f'm{{service="n{g}",i="{i}"}}' for g in range(GROUPS) for i in range(PER)]
    return GrangerLearner(ExplainerConfig(step_s=STEP), idx), idx.rows_for(keys)


def _feed(ln: GrangerLearner, batch: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    r, t, x = (np.concatenate(a) for a in zip(*batch, strict=True))
    ln.observe(r, t, x, step_s=STEP, capacity=16, given=DependencyGraph())


def _block(X: np.ndarray, rows: np.ndarray, g: int, t0: int, t1: int) -> tuple:
    """Group ``g``'s samples of bins ``[t0, t1)``, in time order (one partition's fetch)."""
    cols = np.arange(g * PER, (g + 1) * PER)
    tt = np.arange(t0, t1)
    return (np.tile(rows[cols], tt.size), np.repeat(tt * STEP, PER), X[t0:t1, cols].ravel())


def _in_order(X: np.ndarray, rows: np.ndarray) -> GrangerLearner:
    ln, _ = _learner()
    for t in range(T):
        _feed(ln, [_block(X, rows, g, t, t + 1) for g in range(GROUPS)])
    return ln


def _polls(X: np.ndarray, rows: np.ndarray) -> list[list[tuple]]:
    """A backlog read partition by partition: the first poll holds group g's first
    ``(GROUPS - g) · K`` bins, one group after the other; then each poll is one group's next
    K bins, so group 0 stays ``3 K`` bins ahead of group 3."""
    ends = [(GROUPS - g) * K for g in range(GROUPS)]
    polls = [[_block(X, rows, g, 0, ends[g]) for g in range(GROUPS)]]
    while min(ends) < T:
        for g in range(GROUPS):
            if ends[g] < T:
                polls.append([_block(X, rows, g, ends[g], min(ends[g] + K, T))])
                ends[g] += K
    return polls


def _by_partition(X: np.ndarray, rows: np.ndarray) -> GrangerLearner:
    ln, _ = _learner()
    for poll in _polls(X, rows):
        _feed(ln, poll)
    return ln


def _edges(ln: GrangerLearner) -> list[tuple[str, str, int]]:
    return [(e.cause, e.effect, e.lag) for e in ln.learned]


def test_partition_order_learns_what_time_order_learns() -> None:
    X = _data()
    _, rows = _learner()
    a, b = _in_order(X, rows), _by_partition(X, rows)
    # the same bin vectors close, in the same order: the window and the pairs are identical
    np.testing.assert_array_equal(a.recent, b.recent)
    assert a.recent_head == b.recent_head and a.since_refresh == b.since_refresh
    np.testing.assert_array_equal(a.state.pairs, b.state.pairs)
    # the tests saw the same steps, grouped into other update_many calls: equal to rounding
    for name in ("A", "b", "c", "n"):
        np.testing.assert_allclose(getattr(b.state, name), getattr(a.state, name), rtol=1e-9)
    assert _edges(b) == _edges(a)
    assert {("n0", "n1"), ("n1", "n2"), ("n2", "n3")} <= {(c, e) for c, e, _ in _edges(a)}
    for ea, eb in zip(a.learned, b.learned, strict=True):
        assert eb.strength == pytest.approx(ea.strength, rel=1e-6)


def test_partition_order_holds_bins_open_for_the_slow_groups() -> None:
    """The precondition of the test above: partition order is far from time order (group 0
    runs 3 polls of K bins ahead of group 3), so one open bin would have lost most."""
    X = _data()
    ln, rows = _learner()
    held = 0
    for poll in _polls(X, rows):
        _feed(ln, poll)
        held = max(held, ln.open_bin - ln.closed_to)
    assert held >= 3 * K
    assert np.isfinite(ln.recent[:, rows]).all()  # every bin of the window holds every series


def test_time_order_closes_at_the_next_bin() -> None:
    """In time order (one batch a step) the open bin closes at the next batch's first
    sample, and a late sample of a closed bin is dropped, as with one open bin."""
    ln, rows = _learner()
    g = DependencyGraph()
    for t in range(3):
        ln.observe(rows[:2], np.full(2, t * STEP), np.array([1.0, 2.0]), step_s=STEP,
                   capacity=16, given=g)  # fmt: skip
        assert ln.closed_to == t - 1 and ln.recent_n == t
    ln.observe(rows[:1], np.array([0.0]), np.array([9.0]), step_s=STEP, capacity=16, given=g)
    assert ln.p_rb.shape[1] == 2 and (ln.p_rb[1] == 2).all()


def test_a_stopped_lagging_series_holds_the_bins_only_so_long() -> None:
    ln, rows = _learner()
    g = DependencyGraph()
    ln.observe(rows[:2], np.array([5 * STEP, 0.0]), np.ones(2), step_s=STEP, capacity=16,
               given=g)  # fmt: skip
    assert ln.closed_to == -1  # row 1 was late: bins from 0 wait for it
    window = ln.recent.shape[0]
    for t in range(6, 6 + window + 2):
        ln.observe(rows[:1], np.array([t * STEP]), np.ones(1), step_s=STEP, capacity=16,
                   given=g)  # fmt: skip
    assert ln.closed_to == ln.open_bin - 1  # row 1 stopped: no longer waited for


def test_snapshot_restore_mid_backlog_round_trips() -> None:
    X = _data()
    _, rows = _learner()
    polls = _polls(X, rows)
    cut = 1 + 4 * 5 + 2  # groups 0 and 1 of a round fed, 2 and 3 not yet
    ln, _ = _learner()
    for poll in polls[:cut]:
        _feed(ln, poll)
    assert ln.p_rb.shape[1] > GROUPS * PER and (ln.late_bin >= 0).any()  # mid-backlog
    snap = {**ln.bin_arrays(), **ln.test_arrays()}
    back = GrangerLearner.from_arrays(
        snap, ln.config, ln.index, open_bin=ln.open_bin, since_refresh=ln.since_refresh
    )
    back.learned = ln.learned
    for poll in polls[cut:]:
        _feed(ln, poll)
        _feed(back, poll)
    np.testing.assert_array_equal(back.recent, ln.recent)
    np.testing.assert_array_equal(back.p_rb, ln.p_rb)
    np.testing.assert_array_equal(back.p_sc, ln.p_sc)
    for name in ("A", "b", "c", "n"):
        np.testing.assert_array_equal(getattr(back.state, name), getattr(ln.state, name))
    whole = _by_partition(X, rows)  # and as if it had not stopped
    np.testing.assert_array_equal(whole.state.A, ln.state.A)
    assert _edges(back) == _edges(ln) == _edges(whole)


def test_the_open_entries_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lagging row that stops reporting would hold every bin for granger_window_points
    bins; at the cap the oldest bins close anyway (never the newest)."""
    import explainer.learning as learning

    monkeypatch.setattr(learning, "PENDING_FLOOR", 40)
    monkeypatch.setattr(learning, "PENDING_PER_ROW", 1)
    ln, rows = _learner()
    g = DependencyGraph()
    ln.observe(rows[:2], np.array([STEP, 0.0]), np.ones(2), step_s=STEP, capacity=16,
               given=g)  # fmt: skip
    assert ln.closed_to == -1  # row 1 was late: it holds bin 0 on
    others = rows[[0, 2, 3, 4]]  # row 1 stops reporting
    for t in range(2, 60):
        ln.observe(others, np.full(4, t * STEP), np.ones(4), step_s=STEP, capacity=16,
                   given=g)  # fmt: skip
        assert ln.p_rb.shape[1] <= 40
        assert ln.closed_to < ln.open_bin
    assert ln.closed_to > 40 and ln.recent_n > 40


def test_a_snapshot_from_before_the_watermark_restores() -> None:
    """An older snapshot holds one accumulator (``acc_sum``, ``acc_cnt``) for ``open_bin``:
    it restores as that bin's entries and goes on as if never stopped (time order)."""
    X = _data()
    ln, rows = _learner()
    for t in range(100):
        _feed(ln, [_block(X, rows, g, t, t + 1) for g in range(GROUPS)])
    snap = {**ln.bin_arrays(), **ln.test_arrays()}
    for k in ("pending_rb", "pending_sc", "newest", "late_bin", "marks"):
        del snap[f"explainer.{k}"]
    r, sc = ln.p_rb[0], ln.p_sc
    snap["explainer.acc_sum"] = np.bincount(r, weights=sc[0], minlength=16)
    snap["explainer.acc_cnt"] = np.bincount(r, weights=sc[1], minlength=16)
    back = GrangerLearner.from_arrays(
        snap, ln.config, ln.index, open_bin=ln.open_bin, since_refresh=ln.since_refresh
    )
    back.learned = ln.learned
    for t in range(100, T):
        for a in (ln, back):
            _feed(a, [_block(X, rows, g, t, t + 1) for g in range(GROUPS)])
    np.testing.assert_array_equal(back.recent, ln.recent)
    np.testing.assert_array_equal(back.state.A, ln.state.A)
    assert _edges(back) == _edges(ln)


def test_explainer_checkpoint_mid_backlog_round_trips() -> None:
    """Through the explainer's snapshot and the checkpoint encoding, as the service does."""
    from causalwatch.store.checkpoint import Checkpoint, decode, encode
    from explainer.core import Explainer

    X = _data()
    _, rows = _learner()
    polls = _polls(X, rows)
    cfg = ExplainerConfig(step_s=STEP)

    def build() -> Explainer:
        idx = SeriesIndex()
        idx.rows_for([f'm{{service="n{g}",i="{i}"}}' for g in range(GROUPS) for i in range(PER)])
        return Explainer(cfg, DependencyGraph(), idx)

    def feed(ex: Explainer, poll: list[tuple]) -> None:
        r, t, x = (np.concatenate(a) for a in zip(*poll, strict=True))
        ex.observe(r, t, x)

    a, whole = build(), build()
    for poll in polls[:23]:
        feed(a, poll)
        feed(whole, poll)
    assert a._learner.p_rb.shape[1] > GROUPS * PER  # mid-backlog: bins held open
    blob = encode(Checkpoint(arrays={"explainer": a.snapshot()}))
    b = Explainer.restore(decode(blob).arrays["explainer"], cfg, DependencyGraph(), a.index)
    for poll in polls[23:]:
        feed(b, poll)
        feed(whole, poll)
    np.testing.assert_array_equal(b._learner.recent, whole._learner.recent)
    np.testing.assert_array_equal(b._learner.state.A, whole._learner.state.A)
    assert b.learned_edges() == whole.learned_edges() != []
