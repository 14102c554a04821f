"""``causalwatch replay`` and ``explain`` offline: formats, golden scenario, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from causalwatch.app.cli import main
from causalwatch.app.replay import parse_timestamp, score_arrays

GOLDEN = Path(__file__).parent / "golden" / "shop"


def _write_csv(path: Path, values: np.ndarray, start: str = "2024-01-01 00:00:00") -> None:
    t0 = parse_timestamp(start)
    with path.open("w") as fh:
        fh.write("timestamp,value\n")
        for i, v in enumerate(values):
            if i % 2:
                # ISO 8601 with a space on odd rows, with T on even: both are accepted.
                fh.write(f"{_iso(t0 + 300 * i, ' ')},{v}\n")
            else:
                fh.write(f"{_iso(t0 + 300 * i, 'T')},{v}\n")


def _iso(ts: float, sep: str) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S")


def test_csv_scores_out_has_every_sample_and_flags_the_spike(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1500
    values = 50 + 5 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 1, n)
    values[1200] += 40
    src = tmp_path / "cpu-host_1.csv"
    _write_csv(src, values)
    out = tmp_path / "scores.csv"
    assert main(["replay", str(src), "--scores-out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["series", "timestamp", "value", "score", "alert"]
    assert len(rows) == n
    assert {r["series"] for r in rows} == {"cpu_host_1"}
    scores = np.array([float(r["score"]) for r in rows])
    alerts = np.array([int(r["alert"]) for r in rows])
    assert np.all((scores >= 0) & (scores <= 1))
    assert set(alerts.tolist()) <= {0, 1}
    assert float(rows[0]["timestamp"]) == parse_timestamp("2024-01-01T00:00:00")
    # The spike is flagged within a few points, and the product alerts on it.
    assert scores[1200] > 0.99
    assert alerts[1200:1203].sum() >= 1


def test_golden_scenario_explains_the_injected_root_cause(tmp_path: Path) -> None:
    truth = json.loads((GOLDEN / "truth.json").read_text())
    scores = tmp_path / "s.csv"
    expl = tmp_path / "e.jsonl"
    code = main(
        [
            "replay",
            str(GOLDEN / "samples.jsonl"),
            "--graph",
            str(GOLDEN / "graph.csv"),
            "--scores-out",
            str(scores),
            "--explanations-out",
            str(expl),
            "--no-progress",
        ]
    )
    assert code == 0
    n_lines = sum(1 for _ in (GOLDEN / "samples.jsonl").open())
    assert sum(1 for _ in scores.open()) == n_lines + 1  # header + every sample
    explanations = [json.loads(line) for line in expl.open()]
    assert explanations, "no explanation at all"
    root = truth["roots"][0]
    in_fault = [
        e
        for e in explanations
        if truth["fault_start_ts"] <= e["detected_at"] <= truth["fault_end_ts"]
        and e["target"]["series"].startswith(truth["fault_metric"])
    ]
    assert in_fault, "the fault was not explained"
    top1 = [e["root_causes"][0]["node"] for e in in_fault]
    assert top1.count(root) >= len(top1) / 2, top1
    paged = [e for e in in_fault if e["target"]["series"] == truth["target"]["series"]]
    assert paged and root in [rc["node"] for rc in paged[0]["root_causes"][:3]]
    for e in explanations:  # the documented shape, root causes best first
        assert {"id", "incident_id", "target", "window", "severity", "root_causes"} <= set(e)
        s = [rc["score"] for rc in e["root_causes"]]
        assert s == sorted(s, reverse=True)


def test_targets_file_gives_on_demand_explanations(tmp_path: Path) -> None:
    truth = json.loads((GOLDEN / "truth.json").read_text())
    at = truth["fault_start_ts"] + 600
    targets = tmp_path / "targets.csv"
    targets.write_text(
        "node,series,at\n"
        f"frontend,{json.dumps(truth['target']['series'])[1:-1].replace(',', '')},{at}\n"
        f"frontend,,{at}\n"
        f"no-such-node,,{at}\n"
    )
    # The series key contains no comma here; write it through the csv module to be safe.
    with targets.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["node", "series", "at"])
        w.writerow(["frontend", truth["target"]["series"], at])
        w.writerow(["frontend", "", at])
        w.writerow(["no-such-node", "", at])
    expl = tmp_path / "e.jsonl"
    code = main(
        [
            "replay",
            str(GOLDEN / "samples.jsonl"),
            "--graph",
            str(GOLDEN / "graph.csv"),
            "--targets",
            str(targets),
            "--explanations-out",
            str(expl),
            "--no-progress",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in expl.open()]
    on_demand = [
        e
        for e in lines
        if e.get("target", {}).get("node") in ("frontend", "no-such-node")
        and ("error" in e or abs(e.get("window", {}).get("end", 0) - at) <= 120)
    ]
    errors = [e for e in on_demand if "error" in e]
    assert [e["target"]["node"] for e in errors] == ["no-such-node"]
    good = [e for e in on_demand if "error" not in e]
    assert len(good) >= 2
    assert all(truth["roots"][0] in [rc["node"] for rc in e["root_causes"][:3]] for e in good)


def test_explain_command_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = json.loads((GOLDEN / "truth.json").read_text())
    at = truth["fault_start_ts"] + 600
    code = main(
        [
            "explain",
            "--node",
            "frontend",
            "--at",
            str(at),
            "--input",
            str(GOLDEN / "samples.jsonl"),
            "--graph",
            str(GOLDEN / "graph.csv"),
        ]
    )
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    assert out["target"]["node"] == "frontend"
    assert truth["roots"][0] in [rc["node"] for rc in out["root_causes"][:3]]


def test_score_arrays_matches_replay_of_same_data() -> None:
    rng = np.random.default_rng(1)
    ts = np.arange(500, dtype=float) * 60
    x = rng.normal(0, 1, 500)
    x[400] = 12
    a = score_arrays(["s"] * 500, ts, x)
    b = score_arrays(["s"] * 500, ts, x, chunk=37)  # batch boundaries must not matter
    np.testing.assert_allclose(a["score"], b["score"])
    np.testing.assert_array_equal(a["alert"], b["alert"])
    assert a["score"][400] > 0.99


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("time,value\n1,2\n", "header must be 'timestamp,value'"),
        ("timestamp,value\nyesterday,2\n", "line 2"),
        ("", "is empty"),
    ],
)
def test_bad_csv_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    src = tmp_path / "bad.csv"
    src.write_text(content)
    assert main(["replay", str(src), "--no-progress"]) == 2
    assert message in capsys.readouterr().err


def test_missing_input_and_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["replay", str(tmp_path / "nope.jsonl"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    monkeypatch.setenv("CAUSALWATCH_DETECTOR__WARMUP_POINTS", "zero")
    assert main(["replay", str(GOLDEN / "samples.jsonl"), "--no-progress"]) == 2
    assert "CAUSALWATCH_DETECTOR__WARMUP_POINTS" in capsys.readouterr().err


def test_jsonl_bad_lines_are_counted_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"name": "m", "timestamp": 60.0 * i, "value": float(i % 7)}) for i in range(100)
    ]
    lines.insert(50, "not json")
    lines.insert(60, json.dumps({"name": "m", "timestamp": 1.0, "value": 1}))  # out of order
    src.write_text("\n".join(lines) + "\n")
    assert main(["replay", str(src), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["samples"] == 100
    assert summary["rejected"] == {"not_json": 1, "out_of_order": 1}
