"""What one explanation reads: the aligned history, the series index, the graphs, the step.

A :class:`View` is built by :class:`explainer.core.Explainer` for each ``explain`` /
``on_anomalies`` call and handed to the ranking and impact functions, so they depend on
plain values and can be tested with a history and an index built by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from causalwatch.errors import StateError
from causalwatch.series import SeriesIndex, split_series_key
from explainer.dag import DependencyGraph
from explainer.history import History, infer_step

__all__ = ["Identity", "View", "identity"]

#: a series' metric name and its labels other than the node label, sorted
Identity = tuple[str, tuple[tuple[str, str], ...]]


#: Memo of :func:`identity`, bounded in bytes: keys are up to ~37 kB each within the ingest
#: limits (512-byte name, 32 labels of 128 + 1,024 bytes), so a count bound of 65,536 could
#: have held gigabytes. Cleared when full (keys repeat, so it refills with the live ones).
_IDENTITY_BYTES = 16 * 1_048_576
_identities: dict[tuple[str, str], Identity] = {}
_identity_bytes = [0]


def identity(key: str, node_label: str) -> Identity:
    """Metric name and the labels other than the node label (memoised: keys repeat).

    >>> identity('lat{service="db",stat="p99"}', "service")
    ('lat', (('stat', 'p99'),))
    """
    memo = _identities.get((key, node_label))
    if memo is not None:
        return memo
    name, labels = split_series_key(key)
    labels.pop(node_label, None)
    out = name, tuple(sorted(labels.items()))
    cost = 2 * len(key) + 64 * len(labels) + 200  # the key, the parsed copy, the objects
    if _identity_bytes[0] + cost > _IDENTITY_BYTES:
        _identities.clear()
        _identity_bytes[0] = 0
    _identities[(key, node_label)] = out
    _identity_bytes[0] += cost
    return out


@dataclass(frozen=True)
class View:
    """The explainer's state as one ranking sees it (read-only by convention).

    ``graph`` is the merged graph (given plus learned edges), ``given`` the user's graph
    alone; ``step_s`` is 0.0 until the step is known (then it is inferred per row).
    """

    history: History
    index: SeriesIndex
    graph: DependencyGraph
    given: DependencyGraph
    step_s: float

    def step_for(self, row: int) -> float:
        """The aligned step, else the step inferred from ``row``'s own timestamps."""
        if self.step_s > 0:
            return self.step_s
        step = infer_step(self.history.row_ts(row))
        if step <= 0:
            raise StateError(f"explainer: cannot infer step_s from series row {row}")
        return step

    @functools.cached_property
    def _node_rows(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for _, row in self.index.items():
            out.setdefault(self.index.node_of(row), []).append(row)
        for rows in out.values():
            rows.sort()
        return out

    def node_rows(self) -> dict[str, list[int]]:
        """Every node's series rows, ascending; built once per view (a view lives for one
        explanation call, under the cores' lock, while the index does not change; every
        ranking of the call reads it, ``O(series)`` each time before). Read-only."""
        return self._node_rows

    def identity(self, row: int) -> Identity:
        """:func:`identity` of a row's series key."""
        return identity(self.index.key_of(row), self.index.node_label)
