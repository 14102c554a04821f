"""Series identity: canonical keys and the dense row index shared by every stage.

A *series* is a metric name plus its sorted labels. Its canonical ``series_key`` is written
the Prometheus way, ``name{a="1",b="2"}`` with labels sorted by name, so two records that
differ only in label order are the same series. Every stage refers to a series by its dense
``row`` in one :class:`SeriesIndex`, so per-series state can live in parallel NumPy arrays.

The ``node`` of a series is the value of the node label (``service`` by default): it maps
the series onto a node of the dependency graph. A series without that label is its own node,
named after its metric name.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from causalwatch.errors import StateError

__all__ = ["SeriesIndex", "series_hash", "series_key", "split_series_key"]

IntArray = npt.NDArray[np.int64]


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series_key(name: str, labels: Mapping[str, str] | None = None) -> str:
    """Canonical key: ``name{k="v",...}`` with labels sorted by name.

    >>> series_key("latency", {"service": "api", "az": "b"})
    'latency{az="b",service="api"}'
    >>> series_key("up")
    'up'
    """
    if not labels:
        return name
    body = ",".join(f'{k}="{_escape(labels[k])}"' for k in sorted(labels))
    return f"{name}{{{body}}}"


def split_series_key(key: str) -> tuple[str, dict[str, str]]:
    """Inverse of :func:`series_key`.

    >>> split_series_key('latency{az="b",service="a\\\\"x"}')
    ('latency', {'az': 'b', 'service': 'a"x'})
    """
    brace = key.find("{")
    if brace < 0:
        return key, {}
    name, body = key[:brace], key[brace + 1 : -1]
    labels: dict[str, str] = {}
    i = 0
    while i < len(body):
        eq = body.index("=", i)
        k = body[i:eq]
        j = eq + 2  # skip ="
        out = []
        while body[j] != '"':
            if body[j] == "\\":
                nxt = body[j + 1]
                out.append("\n" if nxt == "n" else nxt)
                j += 2
            else:
                out.append(body[j])
                j += 1
        labels[k] = "".join(out)
        i = j + 2  # skip ",
    return name, labels


def labels_match(key: str, matchers: Mapping[str, str]) -> bool:
    """True when the series (canonical key) carries every matcher's label and value;
    ``__name__`` matches the metric name.

    >>> labels_match('lat{service="db"}', {"service": "db"})
    True
    >>> labels_match('lat{service="db"}', {"__name__": "up"})
    False
    """
    name, labels = split_series_key(key)
    return all((name if k == "__name__" else labels.get(k)) == v for k, v in matchers.items())


def series_hash(key: str) -> int:
    """Stable 64-bit hash of a series key (blake2b), the same in every process.

    Python's ``hash()`` is salted per process, so it must never pick a shard or a Redis key.

    >>> series_hash("up") == series_hash("up")
    True
    """
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


class SeriesIndex:
    """Maps ``series_key`` to a dense ``row`` and back, with node names per row.

    Rows are handed out densely; a removed row goes on a free list and is reused, so arrays
    indexed by row stay as long as the peak number of live series.

    >>> idx = SeriesIndex(node_label="service")
    >>> idx.rows_for(['lat{service="a"}', 'lat{service="b"}', 'lat{service="a"}']).tolist()
    [0, 1, 0]
    >>> idx.node_of(1), idx.key_of(1), len(idx)
    ('b', 'lat{service="b"}', 2)
    """

    def __init__(self, node_label: str = "service", max_series: int | None = None) -> None:
        self.node_label = node_label
        self._needle = f'{node_label}="'
        self.max_series = max_series
        self._row: dict[str, int] = {}
        self._keys: list[str | None] = []
        self._nodes: list[str | None] = []
        self._free: list[int] = []

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, key: object) -> bool:
        return key in self._row

    @property
    def capacity(self) -> int:
        """Number of row slots ever handed out (live + free): the length state arrays need."""
        return len(self._keys)

    def node_for_key(self, key: str) -> str:
        """The node label's value, else the metric name. Reads the one label with ``find``
        (a canonical key's labels are ``,k="v"`` after ``{``) instead of splitting the whole
        key; keys with escapes take :func:`split_series_key`.

        >>> SeriesIndex().node_for_key('lat{az="b",service="api"}')
        'api'
        >>> SeriesIndex().node_for_key('lat{az="b",xservice="api"}')
        'lat'
        """
        brace = key.find("{")
        if brace < 0:
            return key
        if "\\" in key:
            name, labels = split_series_key(key)
            return labels.get(self.node_label) or name
        needle = self._needle
        at = key.find(needle, brace)
        while at >= 0 and key[at - 1] not in "{,":  # part of a longer label name or a value
            at = key.find(needle, at + 1)
        if at < 0:
            return key[:brace]
        start = at + len(needle)
        return key[start : key.index('"', start)] or key[:brace]

    def get(self, key: str) -> int | None:
        return self._row.get(key)

    def add(self, key: str) -> int:
        """Row of ``key``, creating it. Raises StateError when ``max_series`` is reached."""
        row = self._row.get(key)
        if row is not None:
            return row
        if self.max_series is not None and len(self._row) >= self.max_series:
            raise StateError(
                f"series limit reached: {len(self._row)} series (setting ingest.max_series);"
                f" refusing new series {key!r}"
            )
        node = self.node_for_key(key)
        if self._free:
            row = self._free.pop()
            self._keys[row] = key
            self._nodes[row] = node
        else:
            row = len(self._keys)
            self._keys.append(key)
            self._nodes.append(node)
        self._row[key] = row
        return row

    def rows_for(self, keys: Iterable[str]) -> IntArray:
        """Rows for a batch of keys, creating new ones (``O(len(keys))`` dict look-ups)."""
        keys = keys if isinstance(keys, Sequence) else list(keys)
        known = self.rows_known(keys)
        if known is not None:
            return known
        get = self._row.get
        return np.fromiter(
            ((r if (r := get(k)) is not None else self.add(k)) for k in keys),
            dtype=np.int64,
            count=len(keys),
        )

    def rows_known(self, keys: Sequence[str]) -> IntArray | None:
        """Rows of ``keys`` when every one is known already, else None (nothing created).

        The steady-state path: one C-level ``map`` of dict look-ups, no Python loop.

        >>> idx = SeriesIndex()
        >>> _ = idx.rows_for(["a", "b"])
        >>> idx.rows_known(["b", "a", "b"]).tolist(), idx.rows_known(["a", "c"])
        ([1, 0, 1], None)
        """
        rows = list(map(self._row.get, keys))
        if None in rows:
            return None
        return np.array(rows, dtype=np.int64)

    def remove(self, rows: Sequence[int] | IntArray) -> None:
        for row in np.asarray(rows, dtype=np.int64).tolist():
            key = self._keys[row]
            if key is None:
                continue
            del self._row[key]
            self._keys[row] = None
            self._nodes[row] = None
            self._free.append(row)

    def is_live(self, row: int) -> bool:
        return 0 <= row < len(self._keys) and self._keys[row] is not None

    def key_of(self, row: int) -> str:
        key = self._keys[row]
        if key is None:
            raise StateError(f"row {row} is not a live series")
        return key

    def node_of(self, row: int) -> str:
        node = self._nodes[row]
        if node is None:
            raise StateError(f"row {row} is not a live series")
        return node

    def items(self) -> list[tuple[str, int]]:
        return list(self._row.items())

    def rows_of_node(self, node: str) -> list[int]:
        return [r for r, n in enumerate(self._nodes) if n == node]

    def rows_of_nodes(self, nodes: Iterable[str]) -> dict[str, list[int]]:
        """Live rows of each of ``nodes`` in one pass (``O(capacity)``, not per node)."""
        wanted = set(nodes)
        out: dict[str, list[int]] = {n: [] for n in wanted}
        for r, n in enumerate(self._nodes):
            if n in wanted:
                out[n].append(r)
        return out

    def nodes(self) -> set[str]:
        return {n for n in self._nodes if n is not None}

    def to_snapshot(self) -> dict[str, object]:
        return {"node_label": self.node_label, "keys": list(self._keys)}

    @classmethod
    def from_snapshot(
        cls, snap: Mapping[str, object], max_series: int | None = None
    ) -> SeriesIndex:
        idx = cls(node_label=str(snap["node_label"]), max_series=max_series)
        keys = snap["keys"]
        assert isinstance(keys, list)
        # comprehensions, not one loop of appends: a million rows restore in about a second
        node_for_key = idx.node_for_key
        idx._keys = list(keys)
        idx._nodes = [None if k is None else node_for_key(k) for k in keys]
        idx._row = {k: row for row, k in enumerate(keys) if k is not None}
        idx._free = [row for row, k in enumerate(keys) if k is None]
        return idx
