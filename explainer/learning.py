"""Online Granger learning: time bins, the recent-window ring, pair selection, learned edges.

Samples are averaged per series into time bins of ``step_s`` seconds. A bin closes at a
low watermark: once a sample of a later bin arrived *and* every lagging series (one that
sent a late sample, a sample of a bin older than one already seen, in the last
``granger_window_points`` bins) has a sample past it. Why: a backlog read from Kafka comes
partition by partition (up to ~1 MB each per fetch), so one batch can hold partition 0's
series 40 bins ahead of partition 1's; closing at the newest bin (as before) dropped every
slower partition's samples, and learned from about one partition at a time. When the input is in
time order no sample is late and the bins close exactly as before (the same vectors, at
the same ``observe`` call, so the same tests). The open bins are held as entries (row, bin,
sum, count) of at most ``max(PENDING_FLOOR, PENDING_PER_ROW · rows)``: about the consumer's
fetched but not yet closed samples. When its vector closes, a bin is

- differenced against the previous bin and fed to the incremental Granger tests
  (:class:`explainer.granger.GrangerState`): levels share the daily load curve, which makes
  almost every pair "significant" (a common driver, not causation);
- kept in a ring of the last ``granger_window_points`` bins, from which candidate pairs
  are re-selected every ``granger_refresh_steps`` bins (32 until the first tests): the
  given graph's pairs plus the most correlated series per effect
  (:func:`explainer.granger.select_pairs`), so batching cannot change the choice.

After a refresh the tests are read into node-level learned edges: pairs whose FDR-adjusted
q-value is at most ``granger_alpha``, the strongest pair per node pair. Cost:
``O(batch · log batch + rows + open entries)`` per ``observe`` plus ``O(pairs · k²)`` per
closed bin; the correlation screen is ``O(series² · window)`` per refresh, so above
``granger_max_screen_series`` only the given graph's pairs are tested.

Works poorly when: effects land within one bin (Granger sees only lagged effects), or two
series share a driver the tests do not see (a common cause reads as an edge). The watermark
only knows a series lags from its own late samples: a partition whose first backlog
samples come after the fast ones closed bins loses those bins (as before); a lagging series
(or a gappy one, for ``granger_window_points`` bins after its last late sample) that stops
reporting holds the bins for ``granger_window_points`` bins (the entries grow
meanwhile; at the cap the oldest bins close); a series more than ``granger_window_points``
bins behind is not waited for.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError
from causalwatch.series import SeriesIndex
from explainer.config import ExplainerConfig
from explainer.dag import DependencyGraph, Edge
from explainer.granger import GrangerResult, GrangerState, select_pairs
from explainer.results import GrangerEvidence
from explainer.view import identity

__all__ = ["GrangerLearner"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: refresh due after this many closed bins while no test has been read yet
FIRST_REFRESH_STEPS = 32
#: open-bin entries held at most: max(PENDING_FLOOR, PENDING_PER_ROW · rows) (32 B each)
PENDING_FLOOR = 1 << 20
PENDING_PER_ROW = 4


class GrangerLearner:
    """Learns node edges from the series' closed time bins (state in arrays, snapshot-able).

    ``learned`` is replaced (a new list) whenever the tests are read, so a caller can cache
    what it derives from it by identity.
    """

    def __init__(self, config: ExplainerConfig, index: SeriesIndex) -> None:
        self.config = config
        self.index = index
        self.state = GrangerState.empty(
            0, np.zeros((0, 2), dtype=np.int64), config.granger_max_lag, config.granger_forgetting
        )
        self.open_bin = -1  # the newest bin seen (-1: none yet)
        self.closed_to = -1  # every bin up to this one is closed
        self.last_bin = -1  # the newest closed bin that held samples (-1: none yet)
        self.gap_run = 0  # NaN vectors closed since last_bin (at most granger_max_lag)
        self.newest = np.zeros(0, dtype=np.int64)  # per row: its newest bin (-1: none)
        self.late_bin = np.zeros(0, dtype=np.int64)  # per row: open_bin at its last late sample
        self.last_late = -1  # the newest of late_bin
        # the open bins' entries, in arrival order: rows (row, bin) and (sum, count), one
        # column per row, bin and batch
        self.p_rb = np.zeros((2, 0), dtype=np.int64)
        self.p_sc = np.zeros((2, 0))
        self.since_refresh = 0
        # the last granger_window_points closed bin vectors (what Granger saw), oldest first
        # after a roll; candidate pairs are chosen from these, so batching cannot change them
        self.recent = np.full((config.granger_window_points, 0), np.nan)
        self.recent_n = 0
        self.recent_head = 0
        self.prev_vec = np.zeros(0)
        self.learned: list[Edge] = []
        self.result: GrangerResult | None = None
        # the pairs of ``result`` (row i is test i), and their positions, built when first
        # asked (a dict of every pair at each refresh was 4 ms at 1,000 series)
        self.result_pairs = np.zeros((0, 2), dtype=np.int64)
        self._pair_pos: dict[tuple[int, int], int] | None = None

    # -- learning ------------------------------------------------------------------------
    def observe(
        self,
        rows: IntArray,
        ts: FloatArray,
        x: FloatArray,
        *,
        step_s: float,
        capacity: int,
        given: DependencyGraph,
    ) -> None:
        """Hold samples in their bins of ``step_s``; feed the bins that close to the tests.

        A bin closes once the low watermark passes it (:meth:`_watermark`); samples of a
        closed bin are ignored. ``capacity`` is the history's row capacity, ``given`` the
        graph whose edges are always tested.
        """
        self._ensure_capacity(capacity)
        ok = np.isfinite(ts) & np.isfinite(x)
        if not ok.any():
            return
        bins = np.floor(np.where(ok, ts, 0.0) / step_s).astype(np.int64)
        self._mark(rows[ok], bins[ok])
        ok &= bins > self.closed_to
        if ok.any():
            self._hold(rows[ok], bins[ok], x[ok])
        pending: list[FloatArray] = []
        for vec in self._close_to(self._watermark()):
            pending.append(vec - self.prev_vec)
            self.prev_vec = vec
            self.recent[self.recent_head] = vec
            self.recent_head = (self.recent_head + 1) % self.recent.shape[0]
            self.recent_n = min(self.recent_n + 1, self.recent.shape[0])
            self.since_refresh += 1
            due = self.config.granger_refresh_steps
            if self.result is None:
                due = min(due, FIRST_REFRESH_STEPS)
            if self.since_refresh >= due:
                self.state.update_many(np.vstack(pending))
                pending = []
                self._refresh_pairs(given)
        if pending:
            self.state.update_many(np.vstack(pending))

    def _ensure_capacity(self, cap: int) -> None:
        if self.state.n_series < cap:
            self.state.resize(cap)
            pad = cap - self.newest.size
            self.newest = np.concatenate([self.newest, np.full(pad, -1, dtype=np.int64)])
            self.late_bin = np.concatenate([self.late_bin, np.full(pad, -1, dtype=np.int64)])
            self.prev_vec = np.concatenate([self.prev_vec, np.full(pad, np.nan)])
            extra = np.full((self.recent.shape[0], cap - self.recent.shape[1]), np.nan)
            self.recent = np.concatenate([self.recent, extra], axis=1)

    def _mark(self, rows: IntArray, bins: IntArray) -> None:
        """Track each row's newest bin and its last late sample: a sample is late when an
        earlier one (this batch in arrival order, or a previous batch) was of a later bin."""
        before = np.maximum.accumulate(np.r_[self.open_bin, bins[:-1]])
        late = bins < before
        if late.any():
            self.late_bin[rows[late]] = before[late]
            self.last_late = max(self.last_late, int(before[late].max()))
        if bins[0] == bins[-1] and (bins == bins[0]).all():  # in time order: one bin
            self.newest[rows] = np.maximum(self.newest[rows], bins[0])
        else:
            np.maximum.at(self.newest, rows, bins)
        self.open_bin = max(self.open_bin, int(bins.max()))

    def _hold(self, rows: IntArray, bins: IntArray, x: FloatArray) -> None:
        """Append the batch's per-(row, bin) sums and counts to the open-bin entries (each
        sum in arrival order, so a bin's mean is bit for bit the one-accumulator one)."""
        if bins[0] == bins[-1] and (bins == bins[0]).all():  # in time order: one bin
            cnt = np.bincount(rows)
            r = np.flatnonzero(cnt)
            rb = np.vstack([r, np.full(r.size, bins[0])])
            sc = np.vstack([np.bincount(rows, weights=x)[r], cnt[r].astype(np.float64)])
        else:
            span, cap = int(bins.max() - bins.min()) + 1, self.newest.size
            if span < (1 << 62) // max(cap, 1):  # one int64 key: sorts 2x faster
                order = np.argsort((bins - bins.min()) * cap + rows, kind="stable")
            else:
                order = np.lexsort((rows, bins))
            r, b = rows[order], bins[order]
            start = np.r_[True, (r[1:] != r[:-1]) | (b[1:] != b[:-1])]
            gid = np.empty(rows.size, dtype=np.int64)
            gid[order] = np.cumsum(start) - 1
            rb = np.vstack([r[start], b[start]])
            sc = np.vstack([np.bincount(gid, weights=x), np.bincount(gid).astype(np.float64)])
        self.p_rb = np.concatenate([self.p_rb, rb], axis=1)
        self.p_sc = np.concatenate([self.p_sc, sc], axis=1)

    def _watermark(self) -> int:
        """The newest bin that may close: before the newest bin seen, and before the newest
        bin of every lagging row: one that sent a late sample in the last ``S`` bins and
        reported in the last ``S`` (``S = granger_window_points``; older ones stopped
        reporting, or are too far behind to wait for); the entries held are capped at
        ``max(PENDING_FLOOR, PENDING_PER_ROW · rows)`` by closing the oldest bins first
        (never the newest bin)."""
        w = self.open_bin - 1
        recent = self.open_bin - self.recent.shape[0]
        if self.last_late >= max(recent, 0):  # else no row lags: skip the O(rows) pass
            held = (self.late_bin >= max(recent, 0)) & (self.newest >= recent)
            if held.any():
                w = min(w, int(self.newest[held].min()) - 1)
        limit = max(PENDING_FLOOR, PENDING_PER_ROW * self.newest.size)
        n = self.p_rb.shape[1]
        if n > limit:
            u, cnt = np.unique(self.p_rb[1], return_counts=True)
            over = n - np.cumsum(cnt) <= limit  # entries left after closing up to u
            w = max(w, min(int(u[int(np.argmax(over))]), self.open_bin - 1))
        return max(w, self.closed_to)

    def _take(self, w: int) -> tuple[IntArray, FloatArray]:
        """Remove and return the entries of the bins up to ``w`` (in arrival order)."""
        sel = self.p_rb[1] <= w
        k = int(np.count_nonzero(sel))
        if sel[:k].all():  # the usual case: the oldest entries (slices, no copies)
            rb, sc = self.p_rb[:, :k], self.p_sc[:, :k]
            self.p_rb, self.p_sc = self.p_rb[:, k:], self.p_sc[:, k:]
        else:
            rb, sc = self.p_rb[:, sel], self.p_sc[:, sel]
            self.p_rb, self.p_sc = self.p_rb[:, ~sel], self.p_sc[:, ~sel]
        return rb, sc

    def _close_to(self, w: int) -> list[FloatArray]:
        """Close the bins up to ``w``, oldest first; returns their vectors (a gap of empty
        bins closes as NaN vectors, at most ``granger_max_lag`` of them)."""
        if w <= self.closed_to:
            return []
        cap = self.newest.size
        rb, sc = self._take(w)
        if rb.shape[1] and not (rb[1] == rb[1, 0]).all():
            # by bin, arrival order kept within each (stable): one pass, not one mask per bin
            order = np.argsort(rb[1], kind="stable")
            rb, sc = rb[:, order], sc[:, order]
        cuts = np.flatnonzero(rb[1, 1:] != rb[1, :-1]) + 1
        closed: list[FloatArray] = []
        for lo, hi in zip(np.r_[0, cuts].tolist(), np.r_[cuts, rb.shape[1]].tolist(), strict=True):
            if hi <= lo:
                continue
            u = int(rb[1, lo])
            closed.extend(self._gap(u - 1))
            r, c = rb[0, lo:hi], sc[:, lo:hi]
            tot = np.bincount(r, weights=c[0], minlength=cap)
            cnt = np.bincount(r, weights=c[1], minlength=cap)
            with np.errstate(invalid="ignore", divide="ignore"):
                closed.append(np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan))
            self.last_bin, self.gap_run = u, 0
        closed.extend(self._gap(w))
        self.closed_to = w
        return closed

    def _gap(self, upto: int) -> list[FloatArray]:
        """NaN vectors for the empty bins after the last closed one up to ``upto``."""
        if self.last_bin < 0:
            return []
        start = max(self.last_bin, self.closed_to) + 1
        n = min(upto - start + 1, self.config.granger_max_lag - self.gap_run)
        if n <= 0:
            return []
        self.gap_run += n
        return [np.full(self.newest.size, np.nan) for _ in range(n)]

    def _refresh_pairs(self, given: DependencyGraph) -> None:
        """Re-select candidate pairs and re-read the tests into learned node edges."""
        self.since_refresh = 0
        live = np.array(sorted(r for _, r in self.index.items()), dtype=np.int64)
        live = live[live < self.state.n_series]
        if live.size >= 2:
            ordered = np.roll(self.recent, -self.recent_head, axis=0)
            V = ordered[ordered.shape[0] - self.recent_n :][:, live].T
            nodes = [self.index.node_of(int(r)) for r in live.tolist()]
            node_id = {n: i for i, n in enumerate(sorted(set(nodes)))}
            gid = np.array([node_id[n] for n in nodes], dtype=np.int64)
            forced = self._forced_pairs(live, nodes, given)
            cfg = self.config
            local = select_pairs(
                V.T,
                per_effect=(
                    cfg.granger_pairs_per_series
                    if live.size <= cfg.granger_max_screen_series
                    else 0
                ),
                forced=forced,
                exclude_same_group=gid,
            )
            self.state.set_pairs(live[local] if local.size else np.zeros((0, 2), np.int64))
        self._read_tests()

    def _forced_pairs(self, live: IntArray, nodes: list[str], given: DependencyGraph) -> IntArray:
        """Given edges, in both directions, between series of the same metric name."""
        by: dict[tuple[str, str], list[int]] = {}
        for i, r in enumerate(live.tolist()):
            name = identity(self.index.key_of(r), self.index.node_label)[0]
            by.setdefault((nodes[i], name), []).append(i)
        out: list[tuple[int, int]] = []
        names = {name for _, name in by}
        for e in given.edges:
            for name in names:
                for a in by.get((e.cause, name), []):
                    for b in by.get((e.effect, name), []):
                        out.extend([(a, b), (b, a)])
        return np.array(out, dtype=np.int64).reshape(-1, 2)

    def _read_tests(self) -> None:
        res = self.state.test(min_n=float(self.config.granger_min_points))
        self.result = res
        self.result_pairs, self._pair_pos = self.state.pairs, None  # replaced, never written
        best: dict[tuple[str, str], Edge] = {}
        sig = np.flatnonzero(res.q_value <= self.config.granger_alpha)
        rows = self.result_pairs[sig]
        for i, ca, ef in zip(sig.tolist(), rows[:, 0].tolist(), rows[:, 1].tolist(), strict=True):
            try:
                u, v = self.index.node_of(ca), self.index.node_of(ef)
            except StateError:
                continue
            if u == v:
                continue
            strength = float(res.strength[i])
            old = best.get((u, v))
            if old is None or strength > (old.strength or 0.0):
                best[(u, v)] = Edge(
                    u, v, "learned", strength, float(res.q_value[i]), int(res.lag[i])
                )
        self.learned = sorted(best.values(), key=lambda e: (e.cause, e.effect))

    def pair_position(self, cause_row: int, effect_row: int) -> int | None:
        """The index of the pair ``cause_row -> effect_row`` in ``result``, None if untested."""
        if self._pair_pos is None:
            p = self.result_pairs
            self._pair_pos = {
                (a, b): i for i, (a, b) in enumerate(zip(p[:, 0].tolist(), p[:, 1].tolist()))
            }
        return self._pair_pos.get((cause_row, effect_row))

    def forget_rows(self, rows: IntArray) -> None:
        """Forget evicted rows: their open-bin entries, their recent bins and their pairs."""
        inside = rows[rows < self.newest.size]
        self.newest[inside] = -1
        self.late_bin[inside] = -1
        held = ~np.isin(self.p_rb[0], rows)
        self.p_rb, self.p_sc = self.p_rb[:, held], self.p_sc[:, held]
        self.recent[:, rows[rows < self.recent.shape[1]]] = np.nan
        pairs = self.state.pairs
        if pairs.size:
            keep = ~np.isin(pairs, rows).any(axis=1)
            if not keep.all():
                self.state.set_pairs(pairs[keep])
                self._read_tests()

    # -- evidence ------------------------------------------------------------------------
    def evidence(
        self, n: str, row: int, target_node: str, target_row: int, graph: DependencyGraph
    ) -> GrangerEvidence | None:
        """The test of series ``row`` -> ``target_row`` when that pair is tested; else the
        first learned edge on ``graph``'s path ``n -> target_node``; None before the first
        tests and for the target itself."""
        if self.result is None or n == target_node:
            return None
        res = self.result
        i = self.pair_position(row, target_row)
        if i is not None:
            return GrangerEvidence(
                statistic=float(res.f[i]),
                p_value=float(res.p_value[i]),
                q_value=float(res.q_value[i]),
                lag=int(res.lag[i]),
                pair=(self.index.key_of(row), self.index.key_of(target_row)),
            )
        path = graph.path(n, target_node)
        for a, b in itertools.pairwise(path):
            e = graph.edge(a, b)
            if e is not None and e.provenance == "learned":
                return GrangerEvidence(
                    statistic=e.strength,
                    p_value=e.p_value,
                    q_value=e.p_value,
                    lag=e.lag,
                    edge=(a, b),
                )
        return None

    # -- snapshot ------------------------------------------------------------------------
    def bin_arrays(self) -> dict[str, np.ndarray]:
        """The binning and ring state (copies), under the snapshot's ``explainer.*`` keys."""
        return {
            "explainer.pending_rb": self.p_rb.copy(),
            "explainer.pending_sc": self.p_sc.copy(),
            "explainer.newest": self.newest.copy(),
            "explainer.late_bin": self.late_bin.copy(),
            "explainer.marks": np.array(
                [self.closed_to, self.last_bin, self.gap_run], dtype=np.int64
            ),
            "explainer.recent": self.recent.copy(),
            "explainer.prev_vec": self.prev_vec.copy(),
            "explainer.recent_n": np.array([self.recent_n, self.recent_head], dtype=np.int64),
        }

    def test_arrays(self) -> dict[str, np.ndarray]:
        """The Granger statistics (``granger.*``) and the last read tests (``result.*``)."""
        arrays = self.state.to_arrays()
        if self.result is not None:
            r = self.result
            arrays.update(
                {
                    "result.f": r.f.copy(),
                    "result.p_value": r.p_value.copy(),
                    "result.q_value": r.q_value.copy(),
                    "result.lag": r.lag.copy(),
                    "result.strength": r.strength.copy(),
                    "result.n": r.n.copy(),
                    "result.pairs": self.result_pairs.copy(),
                }
            )
        return arrays

    @classmethod
    def from_arrays(
        cls,
        snap: dict[str, np.ndarray],
        config: ExplainerConfig,
        index: SeriesIndex,
        *,
        open_bin: int,
        since_refresh: int,
    ) -> GrangerLearner:
        """Rebuild from :meth:`bin_arrays` + :meth:`test_arrays` (``learned`` is kept in the
        snapshot's JSON meta: the caller sets it); :class:`StateError` when the snapshot's
        ``granger_max_lag`` or ``granger_window_points`` differ from ``config``."""
        ln = cls(config, index)
        ln.state = GrangerState.from_arrays(snap)
        if ln.state.max_lag != config.granger_max_lag:
            raise StateError(
                f"explainer snapshot granger_max_lag {ln.state.max_lag}"
                f" != config {config.granger_max_lag}"
            )
        ln.open_bin, ln.since_refresh = open_bin, since_refresh
        ln._load_bins(snap)
        ln.recent = np.array(snap["explainer.recent"], dtype=np.float64)
        ln.prev_vec = np.array(snap["explainer.prev_vec"], dtype=np.float64)
        ln.recent_n, ln.recent_head = (int(v) for v in np.asarray(snap["explainer.recent_n"]))
        if ln.recent.shape[0] != config.granger_window_points:
            raise StateError(
                f"explainer snapshot granger_window_points {ln.recent.shape[0]}"
                f" != config {config.granger_window_points}"
            )
        if "result.f" in snap:
            ln.result = GrangerResult(
                f=np.array(snap["result.f"], dtype=np.float64),
                p_value=np.array(snap["result.p_value"], dtype=np.float64),
                q_value=np.array(snap["result.q_value"], dtype=np.float64),
                lag=np.array(snap["result.lag"], dtype=np.int64),
                strength=np.array(snap["result.strength"], dtype=np.float64),
                n=np.array(snap["result.n"], dtype=np.float64),
            )
            pairs = np.asarray(snap["result.pairs"], dtype=np.int64).reshape(-1, 2)
            ln.result_pairs, ln._pair_pos = pairs, None
        return ln

    def _load_bins(self, snap: dict[str, np.ndarray]) -> None:
        """The open-bin state of :meth:`bin_arrays`, or of a snapshot written before the
        watermark (one accumulator for ``open_bin``: every older bin was closed)."""
        if "explainer.pending_rb" not in snap:
            s = np.asarray(snap["explainer.acc_sum"], dtype=np.float64)
            c = np.asarray(snap["explainer.acc_cnt"], dtype=np.float64)
            r = np.flatnonzero(c > 0)
            self.p_rb = np.vstack([r, np.full(r.size, self.open_bin)]).astype(np.int64)
            self.p_sc = np.vstack([s[r], c[r]])
            self.newest = np.full(s.size, -1, dtype=np.int64)
            self.newest[r] = self.open_bin
            self.late_bin = np.full(s.size, -1, dtype=np.int64)
            self.closed_to = self.last_bin = max(self.open_bin - 1, -1)
            return
        self.p_rb = np.array(snap["explainer.pending_rb"], dtype=np.int64).reshape(2, -1)
        self.p_sc = np.array(snap["explainer.pending_sc"], dtype=np.float64).reshape(2, -1)
        self.newest = np.array(snap["explainer.newest"], dtype=np.int64)
        self.late_bin = np.array(snap["explainer.late_bin"], dtype=np.int64)
        self.last_late = int(self.late_bin.max()) if self.late_bin.size else -1
        self.closed_to, self.last_bin, self.gap_run = (
            int(v) for v in np.asarray(snap["explainer.marks"])
        )
