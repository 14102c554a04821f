"""deploy/Dockerfile without a Docker engine: multi-stage, slim and pinned, non-root, a
healthcheck that needs no curl, and a build context that holds what the COPY lines need."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from causalwatch.settings import load_settings
from tests.unit.deploy.helpers import DEPLOY, REPO

DOCKERFILE = DEPLOY / "Dockerfile"


def commands(name: str) -> list[Any]:
    """The Dockerfile's NAME instructions, parsed by Docker's own (BuildKit) parser."""
    dockerfile = pytest.importorskip("dockerfile", reason="dockerfile is in the dev extra")
    return [c for c in dockerfile.parse_file(str(DOCKERFILE)) if c.cmd.upper() == name.upper()]


def args_of(name: str) -> list[str]:
    return [" ".join((*c.flags, *c.value)) for c in commands(name)]


def copy_sources() -> list[str]:
    out: list[str] = []
    for c in commands("COPY"):
        if not any(f.startswith("--from=") for f in c.flags):
            out.extend(c.value[:-1])
    return out


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_multi_stage_on_slim_python() -> None:
    (arg,) = [a for a in args_of("ARG") if a.startswith("PYTHON_IMAGE=")]
    assert arg == "PYTHON_IMAGE=python:3.11-slim"
    froms = args_of("FROM")
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE} AS runtime"]
    # The runtime installs only the builder's wheels: no source tree, no build tools.
    (install,) = [c for c in commands("RUN") if "pip install" in c.value[0]]
    assert any("from=builder" in f for f in install.flags)
    assert "--no-index" in install.value[0]
    assert any("pip wheel" in r for r in args_of("RUN"))


def test_runs_as_an_unprivileged_user() -> None:
    users = args_of("USER")
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid not in {"root", "0"}
    assert uid.isdigit() and int(uid) >= 1000
    assert any(f"--uid {uid}" in r for r in args_of("RUN"))


def test_healthcheck_uses_python_urllib_on_the_metrics_port() -> None:
    (cmd,) = commands("HEALTHCHECK")
    assert cmd.value[0] == "CMD"
    hc = " ".join(cmd.value)
    assert "curl" not in hc and "wget" not in hc
    assert "urllib.request.urlopen" in hc
    port = load_settings().publish.metrics_port
    assert f"${{CAUSALWATCH_PUBLISH__METRICS_PORT:-{port}}}/metrics" in hc
    assert {f.split("=")[0] for f in cmd.flags} == {
        "--interval",
        "--timeout",
        "--start-period",
        "--retries",
    }


def test_probe_command_works_against_a_live_endpoint() -> None:
    """The healthcheck's python one-liner exits 0 on 200 and non-zero on 503."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 503)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    (hc,) = args_of("HEALTHCHECK")
    code = re.search(r'python -c "([^"]+)"', hc)
    assert code is not None, hc
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        ok = subprocess.run([sys.executable, "-c", code.group(1), f"{base}/metrics"], timeout=20)
        bad = subprocess.run(
            [sys.executable, "-c", code.group(1), f"{base}/readyz"],
            timeout=20,
            capture_output=True,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert ok.returncode == 0
    assert bad.returncode != 0


def test_entrypoint_is_the_cli() -> None:
    (ep,) = commands("ENTRYPOINT")
    assert ep.json and ep.value == ("causalwatch",)
    scripts = pyproject()["project"]["scripts"]  # type: ignore[index]
    assert "causalwatch" in scripts
    assert commands("CMD")[-1].value == ("run", "all")
    exposed = args_of("EXPOSE")[0].split()
    s = load_settings()
    assert {str(s.publish.metrics_port), str(s.api.port)} == set(exposed)


def test_copy_sources_are_the_packages_pyproject_builds() -> None:
    sources = copy_sources()
    project = pyproject()
    readme = project["project"]["readme"]  # type: ignore[index]
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]  # type: ignore[index]
    packages = {p.rstrip("*") for p in include}
    assert packages <= set(sources), f"not copied: {packages - set(sources)}"
    assert {"pyproject.toml", readme} <= set(sources)
    for src in sources:
        assert (REPO / src).exists(), src


def test_dockerignore_keeps_sources_in_the_context() -> None:
    ignored = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for src in copy_sources():
        assert src not in ignored and f"{src}/" not in ignored, src
    for heavy in (".git", ".venv", "tests", "bench"):
        assert heavy in ignored, heavy


def test_builder_stage_builds_a_wheel_from_the_copied_files(tmp_path: Path) -> None:
    """What the builder stage does, minus Docker: copy exactly the COPY sources and build
    (with pip's build isolation, as in the image: setuptools comes from PyPI)."""
    ctx = tmp_path / "src"
    ctx.mkdir()
    for src in copy_sources():
        path = REPO / src
        if path.is_dir():
            shutil.copytree(path, ctx / src, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, ctx / src)
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--wheel-dir",
            str(out),
            ".",
        ],
        cwd=ctx,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("causalwatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in ("causalwatch", "ingest", "detector", "explainer"):
        assert f"{pkg}/__init__.py" in names, pkg
    assert any(n.endswith("entry_points.txt") for n in names)
