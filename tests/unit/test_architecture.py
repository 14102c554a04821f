"""House rules that a reviewer would otherwise have to catch by eye.

- The layers of ``.importlinter`` hold (``lint-imports``): contracts, pure cores, adapters,
  the app (only ``app.pipeline`` wires the stage cores), tooling.
- Importing the cores and the contracts loads no pydantic and no I/O library at run time.
- Pure cores (ingest decode/validate/batch, detector, explainer) import no I/O library and
  read no environment.
- Redis is imported only in ``causalwatch/store/`` and its errors are caught only in
  ``store/client.py`` (the one error map).
- Every package declares ``__all__`` and every name in it exists.
"""

from __future__ import annotations

import ast
import importlib
import json
import shutil
import subprocess
import sys
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
}
CORES = sorted(
    str(p.relative_to(ROOT))
    for pkg in ("ingest", "detector", "explainer")
    for p in (ROOT / pkg).rglob("*.py")  # ingest/decode/ is a package of cores
    if str(p.relative_to(ROOT)) not in ADAPTERS
)
CONTRACTS = [
    "causalwatch",
    "causalwatch.errors",
    "causalwatch.models",
    "causalwatch.series",
    "causalwatch.wire",
]
BANNED = (
    "kafka",
    "confluent_kafka",
    "redis",
    "httpx",
    "pydantic",
    "pydantic_settings",
    "causalwatch.settings",
    "causalwatch.schemas",
    "causalwatch.app",
    "causalwatch.publish",
    "causalwatch.store",
    "fastapi",
)
SOURCES = sorted(
    p
    for pkg in ("causalwatch", "ingest", "detector", "explainer")
    for p in (ROOT / pkg).rglob("*.py")
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


def test_import_linter_contracts_are_kept() -> None:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [exe, "--config", str(ROOT / ".importlinter")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_cores_and_contracts_load_without_pydantic_or_io_libraries() -> None:
    """At run time, not only in the import graph: a fresh interpreter imports every core
    and the pydantic-free contracts, then lists what got loaded."""
    cores = [c.removesuffix(".py").replace("/", ".").removesuffix(".__init__") for c in CORES]
    code = (
        "import importlib, json, sys\n"
        f"for m in {CONTRACTS + cores!r}: importlib.import_module(m)\n"
        "bad = ('pydantic', 'pydantic_settings', 'kafka', 'redis', 'httpx', 'fastapi',\n"
        "       'uvicorn', 'prometheus_client', 'causalwatch.settings', 'causalwatch.app')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in bad\n"
        "                        or m.startswith(bad))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


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


def test_redis_lives_in_the_store_and_its_errors_are_mapped_in_one_place() -> None:
    store = ROOT / "causalwatch" / "store"
    importers = [
        str(p.relative_to(ROOT))
        for p in SOURCES
        if store not in p.parents and any(m.split(".")[0] == "redis" for m in _imports(p))
    ]
    assert importers == [], f"redis imported outside causalwatch/store: {importers}"
    catchers = []
    for p in SOURCES:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ExceptHandler) and node.type is not None:
                caught = ast.unparse(node.type)
                if "redis" in caught.lower() and "WatchError" not in caught:
                    catchers.append(f"{p.relative_to(ROOT)}: {caught}")
    assert catchers == ["causalwatch/store/client.py: redis.exceptions.RedisError"]


@pytest.mark.parametrize(
    "package",
    [
        "causalwatch",
        "ingest",
        "ingest.decode",
        "detector",
        "explainer",
        "causalwatch.errors",
        "causalwatch.models",
        "causalwatch.schemas",
        "causalwatch.series",
        "causalwatch.settings",
        "causalwatch.wire",
        "causalwatch.app.pipeline",
        "causalwatch.app.sync",
        "causalwatch.app.service",
        "causalwatch.app.replay",
        "causalwatch.store.client",
        "causalwatch.store.checkpoint",
        "causalwatch.store.outbox",
        "causalwatch.publish.api",
        "detector.feedback",
        "detector.severity",
    ],
)
def test_all_is_declared_and_complete(package: str) -> None:
    mod = importlib.import_module(package)
    names = getattr(mod, "__all__", None)
    assert names, f"{package} declares no __all__"
    missing = [n for n in names if not hasattr(mod, n)]
    assert missing == [], f"{package}.__all__ names missing attributes: {missing}"
