"""Offline replay: the live detector and explainer code over files, as fast as possible.

The pipeline is built by :func:`causalwatch.app.pipeline.build_pipeline`, as in the live
service, with no adapters: this module is the file source (and the file sinks) around it.

Inputs: JSONL (one native sample per line, decoded and validated by the same ingest code
as Kafka records) or CSV ``timestamp,value`` (one series named after the file; timestamps
as unix seconds or ISO 8601 with ``T`` or a space, no zone meaning UTC).

Outputs (stable formats, scripted against by benchmarks and users):

- ``--scores-out``: CSV ``series,timestamp,value,score,alert`` for every accepted sample;
  ``alert`` is 1 where the product itself would page (a new alert fired), else 0;
- ``--explanations-out``: one explanation JSON per line.

Rejected samples (bad lines, out-of-order timestamps) are counted by reason and reported;
they are not in the scores file.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from causalwatch.app.pipeline import Pipeline, StepOutput, build_pipeline
from causalwatch.errors import CausalwatchError, ConfigError, DecodeError, RecordError
from causalwatch.models import Explanation, RawRecord, SampleBatch
from causalwatch.schemas import explanation_json
from causalwatch.series import series_key
from causalwatch.settings import Settings, load_settings
from explainer.dag import load_graph

__all__ = [
    "ReplaySummary",
    "Target",
    "parse_timestamp",
    "read_csv_series",
    "read_targets",
    "replay_batches",
    "replay_file",
    "score_arrays",
]

FloatArray = npt.NDArray[np.float64]

CHUNK = 20_000


def parse_timestamp(text: str) -> float:
    """Unix seconds from unix seconds or ISO 8601 (``T`` or space; no zone means UTC).

    >>> parse_timestamp("2014-04-10 00:02:00")
    1397088120.0
    >>> parse_timestamp("1397088120")
    1397088120.0
    >>> parse_timestamp("2014-04-10T02:02:00+02:00")
    1397088120.0
    """
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise DecodeError(
            f"field 'timestamp' {text!r} is neither unix seconds nor ISO 8601",
            reason="bad_timestamp",
            field="timestamp",
        ) from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def read_csv_series(path: Path) -> tuple[str, FloatArray, FloatArray]:
    """A ``timestamp,value`` CSV as one series named after the file."""
    name = path.stem
    ts: list[float] = []
    vals: list[float] = []
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise ConfigError(f"replay input {str(path)!r} is empty", setting="INPUT")
        cols = [h.strip().lower() for h in header]
        if cols[:2] != ["timestamp", "value"]:
            raise ConfigError(
                f"replay input {str(path)!r}: CSV header must be 'timestamp,value' (got {header})",
                setting="INPUT",
            )
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            try:
                ts.append(parse_timestamp(row[0]))
                vals.append(float(row[1]))
            except (RecordError, ValueError, IndexError) as exc:
                raise ConfigError(
                    f"replay input {str(path)!r} line {line_no}: {exc}", setting="INPUT"
                ) from exc
    return series_key(_metric_name(name)), np.asarray(ts), np.asarray(vals)


def _metric_name(stem: str) -> str:
    out = "".join(c if (c.isalnum() or c in "_:") else "_" for c in stem)
    return out if out and not out[0].isdigit() else f"_{out}"


@dataclass(frozen=True)
class Target:
    node: str
    series: str | None
    at: float
    #: start of the anomaly window (None: found from the data)
    start: float | None = None


def read_targets(path: Path) -> list[Target]:
    """Targets for on-demand explanations: CSV ``node,series,at[,start]`` (series and start
    may be empty; ``start`` fixes the start of the anomaly window, like ``--since``)."""
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            try:
                start = row.get("start") or None
                out.append(
                    Target(
                        row["node"],
                        row.get("series") or None,
                        parse_timestamp(row["at"]),
                        parse_timestamp(start) if start else None,
                    )
                )
            except (KeyError, RecordError) as exc:
                raise ConfigError(
                    f"targets file {str(path)!r}: needs columns node,series,at ({exc})",
                    setting="--targets",
                ) from exc
    return sorted(out, key=lambda t: t.at)


@dataclass
class ReplaySummary:
    samples: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    explanations: int = 0
    seconds: float = 0.0
    #: incidents that paged (their alerts agreed: one page each), and incidents watched but
    #: never paged (closed, or still open at the end, without agreement)
    incidents_paged: int = 0
    incidents_watched: int = 0


def _jsonl_batches(
    path: Path, pipe: Pipeline, chunk: int
) -> Iterator[tuple[SampleBatch, list[RecordError]]]:
    with path.open("rb") as fh:
        records: list[RawRecord] = []
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            records.append(RawRecord(path.name, 0, line_no, line))
            if len(records) >= chunk:
                yield pipe.decode(records, 0.0)
                records = []
        if records:
            yield pipe.decode(records, 0.0)


def replay_pipeline(
    path: Path, settings: Settings, graph_file: Path | None = None, *, explainer: bool = True
) -> Pipeline:
    """The pipeline replaying ``path``: role ``all`` (``detector`` without the explainer),
    wall-clock age checks off, JSONL lines decoded as native JSON samples."""
    graph = load_graph(graph_file) if graph_file else None
    return build_pipeline(
        settings,
        "all" if explainer else "detector",
        graph=graph,
        replay=True,
        formats={path.name: "json"},
    )


def input_batches(
    path: Path, pipe: Pipeline, chunk: int = CHUNK
) -> tuple[int, Iterator[tuple[SampleBatch, list[RecordError]]]]:
    """(approximate number of samples, iterator of decoded batches) for a replay input."""
    if not path.is_file():
        raise ConfigError(f"replay input {str(path)!r} does not exist", setting="INPUT")
    if path.suffix.lower() == ".csv":
        key, ts, vals = read_csv_series(path)

        def gen() -> Iterator[tuple[SampleBatch, list[RecordError]]]:
            for i in range(0, len(ts), chunk):
                n = len(ts[i : i + chunk])
                yield (
                    SampleBatch(
                        [key] * n,
                        ts[i : i + chunk],
                        vals[i : i + chunk],
                        np.full(n, -1, dtype=np.int64),
                    ),
                    [],
                )

        return len(ts), gen()
    total = sum(1 for _ in path.open("rb"))
    return total, _jsonl_batches(path, pipe, chunk)


def replay_batches(
    pipe: Pipeline,
    batches: Iterable[tuple[SampleBatch, list[RecordError]]],
    *,
    on_step: Callable[[StepOutput], None] | None = None,
    targets: list[Target] | None = None,
    on_target: Callable[[Target, Explanation | None, str | None], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReplaySummary:
    """Run the pipeline over decoded batches in order (the path shared by CLI and benches).

    Batches are split at target times so an on-demand explanation at ``t`` sees exactly the
    data up to ``t``.
    """
    import time

    summary = ReplaySummary()
    t0 = time.perf_counter()
    pending = list(targets or [])
    for batch, errors in batches:
        for err in errors:
            summary.rejected[err.reason] += 1
        for part in _split_at(batch, [t.at for t in pending]):
            out = pipe.process(part)
            for err in out.errors:
                summary.rejected[err.reason] += 1
            summary.samples += len(out.batch)
            summary.alerts += len(out.events)
            summary.explanations += len(out.explanations)
            if on_step is not None:
                on_step(out)
            last_ts = float(part.ts.max()) if len(part) else -math.inf
            while pending and pending[0].at <= last_ts:
                _explain_target(pipe, pending.pop(0), on_target, summary)
        if progress is not None:
            progress(len(batch) + len(errors))
    for t in pending:  # targets after the end of the data: explain with what there is
        _explain_target(pipe, t, on_target, summary)
    summary.seconds = time.perf_counter() - t0
    exp = pipe.cores.explainer
    if exp is not None:
        watching, paged, watched = exp.incident_counts()
        summary.incidents_paged, summary.incidents_watched = paged, watched + watching
    return summary


def _explain_target(
    pipe: Pipeline,
    target: Target,
    on_target: Callable[[Target, Explanation | None, str | None], None] | None,
    summary: ReplaySummary,
) -> None:
    if pipe.cores.explainer is None or on_target is None:
        return
    try:
        exp = pipe.explain(target.node, target.series, target.at, target.start)
    except CausalwatchError as exc:  # reported per target; the replay goes on
        on_target(target, None, str(exc))
        return
    summary.explanations += 1
    on_target(target, exp, None)


def _split_at(batch: SampleBatch, times: list[float]) -> Iterator[SampleBatch]:
    """Split a batch (in arrival order) where its timestamps first pass each target time."""
    if not times or len(batch) == 0:
        yield batch
        return
    start = 0
    n = len(batch)
    for t in times:
        passed = np.flatnonzero(batch.ts[start:] > t)
        if len(passed) == 0:
            break
        cut = start + int(passed[0])
        if cut > start:
            yield _slice(batch, start, cut)
            start = cut
    if start < n:
        yield _slice(batch, start, n)


def _slice(batch: SampleBatch, a: int, b: int) -> SampleBatch:
    return SampleBatch(batch.series_keys[a:b], batch.ts[a:b], batch.value[a:b], batch.origin[a:b])


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def write_scores(fh: IO[str], out: StepOutput) -> None:
    res = out.result
    if res is None:
        return
    buf = io.StringIO()
    b = out.batch
    score = np.round(res.score, 6)
    for key, t, v, s, a in zip(
        b.series_keys,
        b.ts.tolist(),
        b.value.tolist(),
        score.tolist(),
        res.fired.tolist(),
        strict=True,
    ):
        buf.write(f"{_csv_field(key)},{_fmt(t)},{_fmt(v)},{s!r},{int(a)}\n")
    fh.write(buf.getvalue())


def _csv_field(text: str) -> str:
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def replay_file(
    path: Path,
    *,
    settings: Settings | None = None,
    graph_file: Path | None = None,
    scores_out: Path | None = None,
    explanations_out: Path | None = None,
    targets_file: Path | None = None,
    show_progress: bool = True,
) -> ReplaySummary:
    """``causalwatch replay``: one input file through detector and explainer."""
    from tqdm import tqdm

    settings = settings or load_settings()
    pipe = replay_pipeline(path, settings, graph_file)
    total, batches = input_batches(path, pipe)
    targets = read_targets(targets_file) if targets_file else None
    scores_fh = scores_out.open("w") if scores_out else None
    exp_fh = explanations_out.open("w") if explanations_out else None
    if scores_fh is not None:
        scores_fh.write("series,timestamp,value,score,alert\n")
    bar = tqdm(total=total, unit="sample", disable=not show_progress, mininterval=0.5)

    def on_step(out: StepOutput) -> None:
        if scores_fh is not None:
            write_scores(scores_fh, out)
        if exp_fh is not None:
            for e in out.explanations:
                exp_fh.write(explanation_json(e) + "\n")

    def on_target(t: Target, exp: Explanation | None, error: str | None) -> None:
        if exp_fh is None:
            return
        if exp is not None:
            exp_fh.write(explanation_json(exp) + "\n")
        else:
            exp_fh.write(
                json.dumps(
                    {"target": {"node": t.node, "series": t.series}, "at": t.at, "error": error}
                )
                + "\n"
            )

    try:
        summary = replay_batches(
            pipe,
            batches,
            on_step=on_step,
            targets=targets,
            on_target=on_target,
            progress=bar.update,
        )
    finally:
        bar.close()
        if scores_fh is not None:
            scores_fh.close()
        if exp_fh is not None:
            exp_fh.close()
    return summary


def explain_offline(
    path: Path,
    target: Target,
    *,
    settings: Settings | None = None,
    graph_file: Path | None = None,
) -> tuple[Explanation | None, str | None]:
    """Replay ``path`` up to ``target.at`` and explain the target there (``explain --input``)."""
    settings = settings or load_settings()
    pipe = replay_pipeline(path, settings, graph_file)
    _total, batches = input_batches(path, pipe)
    got: list[tuple[Explanation | None, str | None]] = []
    replay_batches(
        pipe, batches, targets=[target], on_target=lambda _t, e, err: got.append((e, err))
    )
    return got[0] if got else (None, "no data")


def score_arrays(
    series_keys: list[str],
    ts: FloatArray,
    value: FloatArray,
    settings: Settings | None = None,
    chunk: int = CHUNK,
) -> dict[str, npt.NDArray[Any]]:
    """Scores of samples given as arrays, through the replay path (for benchmarks).

    Returns arrays aligned with the *accepted* samples: ``series``, ``ts``, ``value``,
    ``score``, ``alert`` (fired) and ``severity``.
    """
    settings = settings or load_settings()
    pipe = build_pipeline(settings, "detector", replay=True)
    cols: dict[str, list[Any]] = {
        k: [] for k in ("series", "ts", "value", "score", "alert", "severity")
    }

    def on_step(out: StepOutput) -> None:
        res = out.result
        if res is None:
            return
        cols["series"].append(np.asarray(out.batch.series_keys, dtype=object))
        cols["ts"].append(out.batch.ts)
        cols["value"].append(out.batch.value)
        cols["score"].append(res.score)
        cols["alert"].append(res.fired)
        cols["severity"].append(res.severity)

    def gen() -> Iterator[tuple[SampleBatch, list[RecordError]]]:
        for i in range(0, len(series_keys), chunk):
            j = min(i + chunk, len(series_keys))
            yield (
                SampleBatch(
                    series_keys[i:j], ts[i:j], value[i:j], np.full(j - i, -1, dtype=np.int64)
                ),
                [],
            )

    replay_batches(pipe, gen(), on_step=on_step)
    return {k: (np.concatenate(v) if v else np.empty(0)) for k, v in cols.items()}
