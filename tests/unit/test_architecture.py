"""House rules that a reviewer would otherwise have to catch by eye.

- Pure cores (ingest decode/validate/batch, detector, explainer) import no I/O library:
  no kafka, redis, httpx, pydantic_settings, causalwatch.publish, and no os.environ.
- Every package declares ``__all__`` and every name in it exists.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = {
    "ingest/kafka_source.py",
    "ingest/kafka_sink.py",
    "ingest/deadletter.py",
    "ingest/kafka_backend.py",
    "ingest/kafka_config.py",
    "ingest/kafka_errors.py",
    "ingest/confluent_backend.py",
    "explainer/redis_dag_cache.py",
    "detector/redis_checkpoint.py",
}
CORES = sorted(
    str(p.relative_to(ROOT))
    for pkg in ("ingest", "detector", "explainer")
    for p in (ROOT / pkg).glob("*.py")
    if str(p.relative_to(ROOT)) not in ADAPTERS
)
BANNED = (
    "kafka",
    "confluent_kafka",
    "redis",
    "httpx",
    "pydantic_settings",
    "causalwatch.publish",
    "fastapi",
)


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
    return out


@pytest.mark.parametrize("module", CORES)
def test_cores_import_no_io_library(module: str) -> None:
    bad = [
        m for m in _imports(ROOT / module) if any(m == b or m.startswith(b + ".") for b in BANNED)
    ]
    assert bad == [], f"{module} is a pure core but imports {bad}"


@pytest.mark.parametrize("module", CORES)
def test_cores_read_no_environment(module: str) -> None:
    text = (ROOT / module).read_text()
    assert "os.environ" not in text and "os.getenv" not in text


@pytest.mark.parametrize(
    "package",
    [
        "causalwatch",
        "ingest",
        "detector",
        "explainer",
        "causalwatch.errors",
        "causalwatch.models",
        "causalwatch.series",
        "causalwatch.settings",
        "causalwatch.pipeline",
    ],
)
def test_all_is_declared_and_complete(package: str) -> None:
    mod = importlib.import_module(package)
    names = getattr(mod, "__all__", None)
    assert names, f"{package} declares no __all__"
    missing = [n for n in names if not hasattr(mod, n)]
    assert missing == [], f"{package}.__all__ names missing attributes: {missing}"
