"""``causalwatch demo`` links the incident page, and the page it links names the injected
root cause (the demo's stack, its real broker and Redis, as a user runs it)."""

from __future__ import annotations

import re
import threading
import time

import httpx
import pytest

from causalwatch.app.demo import run_demo

pytestmark = pytest.mark.integration


def test_demo_prints_a_working_incident_page_link() -> None:
    lines: list[str] = []
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(
        target=lambda: result.append(run_demo(echo=lines.append, stop=stop, timeout_s=150)),
        daemon=True,
    )
    t.start()
    try:
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline and t.is_alive():
            if any("stack stays up" in line for line in lines):
                break
            time.sleep(0.2)
        text = "\n".join(lines)
        assert "stack stays up" in text, text
        root = re.search(r"injected fault: \S+ at '([^']+)'", text).group(1)
        url = re.search(r"incident page\s+(http://\S+/incidents/\S+)", text).group(1)
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200, text
        cause = re.search(r'<p id="root-cause">(.*?)</p>', page.text, re.S).group(1)
        assert root in cause, (cause, text)
        assert '<svg class="graph"' in page.text and '<svg class="plot"' in page.text
    finally:
        stop.set()
        t.join(60)
    assert result == [0], "\n".join(lines)  # the demo's own verdict: root cause first
