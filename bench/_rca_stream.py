"""One case through the live path: the code of ``causalwatch replay``, fed from arrays.

A case is a stream of samples (a matrix ``values[time, series]``, NaN where nothing was
sent), an optional call graph and optional on-demand targets. :func:`run_case` turns each
time step into one JSON message (an array of native samples, the format a scraper pushes),
decodes it with the pipeline's own decoder (:meth:`Pipeline.decode`), and runs the batches
through :func:`causalwatch.app.replay.replay_batches` on the pipeline that
:func:`causalwatch.app.replay.replay_pipeline` builds: the same builder, decoder, detector,
incidents, explanations and ``--targets`` handling as the CLI. The graph goes through a
graph file (``load_graph``), as ``replay --graph`` does. Nothing calls a core directly.

Batching: ``batch="step"`` decodes one time step per batch (the cadence of a live
consumer); ``batch="replay"`` groups messages until ``CHUNK`` samples, the batches
``causalwatch replay`` forms from a JSONL file of one sample per line.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from causalwatch.app.pipeline import Cores, Pipeline, StepOutput, build_pipeline
from causalwatch.app.replay import CHUNK, Target, read_targets, replay_batches, replay_pipeline
from causalwatch.errors import RecordError
from causalwatch.models import Explanation, RawRecord, SampleBatch
from causalwatch.series import split_series_key
from causalwatch.settings import Settings


@dataclass
class Case:
    """One stream to replay: ``keys[j]`` is column ``j`` of ``values`` (rows = ``ts``)."""

    system: str
    name: str
    keys: list[str]
    ts: np.ndarray
    values: np.ndarray
    edges: list[tuple[str, str]] | None = None  # (cause, effect); None: no graph file
    targets: list[Target] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)


@dataclass
class Expl:
    """The parts of a published explanation the scoring reads (JSON-ready)."""

    at: float
    node: str
    series: str
    roots: list[str]
    severity: float
    incident: str
    version: int

    @classmethod
    def of(cls, e: Explanation) -> Expl:
        return cls(
            float(e.detected_at),
            e.target.node,
            e.target.series,
            [rc.node for rc in e.root_causes],
            float(e.severity),
            e.incident_id,
            int(e.version),
        )

    def to_json(self) -> list[Any]:
        return [
            self.at,
            self.node,
            self.series,
            self.roots,
            self.severity,
            self.incident,
            self.version,
        ]

    @classmethod
    def from_json(cls, v: Sequence[Any]) -> Expl:
        return cls(float(v[0]), v[1], v[2], list(v[3]), float(v[4]), v[5], int(v[6]))


@dataclass
class Run:
    """What the live path produced for one case."""

    explanations: list[Expl]
    answers: list[list[str] | None]  # per target: ranked nodes, None on an error
    alerts: int
    samples: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {
            "explanations": [e.to_json() for e in self.explanations],
            "answers": self.answers,
            "alerts": self.alerts,
            "samples": self.samples,
            "seconds": round(self.seconds, 3),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Run:
        return cls(
            [Expl.from_json(v) for v in d["explanations"]],
            d["answers"],
            d["alerts"],
            d["samples"],
            d["seconds"],
        )


def _messages(keys: Sequence[str], ts: np.ndarray, values: np.ndarray) -> Iterator[bytes]:
    """One JSON array of native samples per time step (NaN cells are not sent)."""
    parsed = [split_series_key(k) for k in keys]
    ok = np.isfinite(values)
    for i in range(len(ts)):
        t = float(ts[i])
        cols = np.flatnonzero(ok[i]).tolist()
        if not cols:
            continue
        row = values[i]
        doc = [
            {"name": parsed[j][0], "labels": parsed[j][1], "timestamp": t, "value": float(row[j])}
            for j in cols
        ]
        yield json.dumps(doc, separators=(",", ":")).encode()


def _write_graph(edges: Sequence[tuple[str, str]], path: Path) -> None:
    lines = ["cause,effect"] + [f"{_csv(c)},{_csv(e)}" for c, e in edges]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _csv(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _write_targets(targets: Sequence[Target], path: Path) -> None:
    import csv

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "series", "at", "start"])
        for t in targets:
            start = "" if t.start is None else repr(float(t.start))
            w.writerow([t.node, t.series or "", repr(float(t.at)), start])


class Stream:
    """One replay in progress: the pipeline ``causalwatch replay`` builds for a system
    (graph file, settings), fed one part of a case at a time.

    :meth:`fork` copies the pipeline's state (series index, detector, explainer, the
    explainer worker's queue) into a new
    pipeline built the same way, so a shared prefix (PetShop's normal rows) is replayed once
    and each issue continues from an identical state: the same as replaying prefix + issue
    in one file, at a fraction of the cost.
    """

    def __init__(
        self,
        system: str,
        settings: Settings,
        edges: Sequence[tuple[str, str]] | None,
        batch: str = "step",
        _pipe: Pipeline | None = None,
    ) -> None:
        self.system, self.settings, self.batch = system, settings, batch
        self.topic = f"{system}.jsonl"
        self.edges = list(edges) if edges is not None else None
        if _pipe is not None:
            self.pipe = _pipe
            return
        with tempfile.TemporaryDirectory(prefix="rca_suite_") as tmp:
            graph_file = None
            if edges is not None:
                graph_file = Path(tmp) / "graph.csv"
                _write_graph(edges, graph_file)
            self.pipe = replay_pipeline(Path(self.topic), settings, graph_file)

    def fork(self) -> Stream:
        c = self.pipe.cores
        # the explainer worker's queue too (pending requests, last runs): without it the
        # fork explained inline, every alert at once, which no live process does
        idx, det, ex, queue = copy.deepcopy((c.index, c.detector, c.explainer, c.queue))
        cores = Cores(index=idx, detector=det, explainer=ex, sensitivity=c.sensitivity, queue=queue)
        pipe = build_pipeline(
            self.settings, "all", cores=cores, replay=True, formats={self.topic: "json"}
        )
        return Stream(self.system, self.settings, self.edges, self.batch, _pipe=pipe)

    def feed(
        self,
        keys: Sequence[str],
        ts: np.ndarray,
        values: np.ndarray,
        targets: Sequence[Target] = (),
    ) -> Run:
        """Replay rows ``values[time, series]`` (``keys`` per column) with on-demand
        ``targets`` (written to and read from a targets file, as ``replay --targets``)."""
        pipe, topic = self.pipe, self.topic
        parsed: list[Target] | None = None
        if targets:
            with tempfile.TemporaryDirectory(prefix="rca_suite_") as tmp:
                tfile = Path(tmp) / "targets.csv"
                _write_targets(targets, tfile)
                parsed = read_targets(tfile)  # the CLI's reader (sorted by time)
        got: dict[tuple[str, str | None, float], list[str] | None] = {}
        expls: list[Expl] = []

        def batches() -> Iterator[tuple[SampleBatch, list[RecordError]]]:
            records: list[RawRecord] = []
            n = 0
            for off, msg in enumerate(_messages(keys, ts, values)):
                records.append(RawRecord(topic, 0, off, msg))
                n += msg.count(b'"value"')
                if self.batch == "step" or n >= CHUNK:
                    yield pipe.decode(records, 0.0)
                    records, n = [], 0
            if records:
                yield pipe.decode(records, 0.0)

        def on_step(out: StepOutput) -> None:
            expls.extend(Expl.of(e) for e in out.explanations)

        def on_target(t: Target, exp: Explanation | None, _err: str | None) -> None:
            got[(t.node, t.series, t.at)] = (
                None if exp is None else [rc.node for rc in exp.root_causes]
            )

        t0 = time.perf_counter()
        summary = replay_batches(
            pipe, batches(), on_step=on_step, targets=parsed, on_target=on_target
        )
        answers = [got.get((t.node, t.series, float(t.at))) for t in targets]
        return Run(expls, answers, summary.alerts, summary.samples, time.perf_counter() - t0)


def run_case(case: Case, settings: Settings, batch: str = "step") -> Run:
    """Replay one whole case through the pipeline ``causalwatch replay`` builds."""
    return Stream(case.system, settings, case.edges, batch).feed(
        case.keys, case.ts, case.values, case.targets
    )
