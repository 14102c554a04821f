"""The incident pages in a real headless Chromium, against a live service fed by the demo
scenario (real Kafka-protocol broker, real Redis, ``serve(settings, "all")``).

Checked as a person would use them: without the token nothing is readable; after signing
in the list shows the incident and follows new explanations live; the incident page names
the injected root cause, highlights its path in the graph and draws the series against the
expected band; the feedback buttons (reached with the keyboard) change the incident; the
page fits a phone-width window. Screenshots of each step are written to a pytest tmp dir
and copied to ``artifacts/pages/`` (gitignored) for people to look at.

Needs Debian's ``chromium`` and ``chromium-driver`` and the ``selenium`` package (dev
extra); skipped with the reason when one is missing.
"""

from __future__ import annotations

import base64
import itertools
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from causalwatch.app.demo import produce_scenario
from causalwatch.app.service import Service, serve
from causalwatch.settings import load_settings
from causalwatch.store.results import ResultStore
from causalwatch.tooling.embedded import free_port
from causalwatch.tooling.simulate import Scenario, microservice_demo_scenario
from ingest.kafka_sink import KafkaSink, ensure_topics
from tests.unit.publish.test_webhooks import make_explanation

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip(
        "needs Debian's chromium and chromium-driver (apt-get install chromium "
        "chromium-driver; deploy/ci-install.sh installs them)",
        allow_module_level=True,
    )
webdriver = pytest.importorskip(
    "selenium.webdriver", reason="needs selenium (pip install -e '.[dev]')"
)
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

TOKEN = "page-test-token"
N_POINTS, FAULT_START = 720, 640
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Stack:
    svc: Service
    url: str
    root: str
    incident_id: str
    target_series: str
    target_node: str
    prefix: str
    redis_url: str


def _wait(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture(scope="module")
def stack(
    broker: Any, redis_server: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    uid = uuid.uuid4().hex[:8]
    now = time.time()
    scenario: Scenario = microservice_demo_scenario(
        seed=11,
        n_points=N_POINTS,
        step_s=60.0,
        start_ts=float(int(now // 60) * 60 - N_POINTS * 60),
        fault_start=FAULT_START,
        fault_len=45,
    )
    graph = tmp_path_factory.mktemp("graph") / "graph.csv"
    graph.write_text(scenario.graph.to_csv())
    topics = (f"m{uid}", f"t{uid}", f"p{uid}")
    port = free_port()
    settings = load_settings(
        kafka={
            "bootstrap_servers": broker.bootstrap,
            "group_id": f"g{uid}",
            "topics": [
                {"name": topics[0], "format": "json"},
                {"name": topics[1], "format": "influx"},
                {"name": topics[2], "format": "auto"},
            ],
            "session_timeout_ms": 6_000,
            "heartbeat_interval_ms": 1_000,
            "max_poll_interval_ms": 30_000,
        },
        redis={"url": redis_server.url, "prefix": f"cw{uid}:", "checkpoint_interval_s": 1.0},
        publish={"metrics_port": free_port()},
        api={"port": port, "token": TOKEN, "external_url": f"http://127.0.0.1:{port}"},
        explainer={"graph_file": graph},
    )
    ensure_topics(broker.bootstrap, {t: 1 for t in topics})
    sink = KafkaSink(settings.kafka)
    produce_scenario(sink, scenario, 0, N_POINTS, topics=topics, bad_records=False)
    sink.close()
    stop = threading.Event()
    svc = serve(settings, "all", stop=stop, block=False)
    root = scenario.roots[0]
    try:

        def fault_incident() -> tuple[str, str, str] | None:
            if svc.error is not None:
                raise AssertionError(f"the service failed: {svc.error!r}")
            for inc in svc.results.list_incidents(limit=200):
                onset = scenario.fault_start_ts
                if inc["opened_at"] > onset + 900 or inc["updated_at"] < onset - 60:
                    continue  # the fault's end is a change too, explained on its own
                for key, t in inc["targets"].items():
                    if t["node"] != root and t["top_root_cause"] == root:
                        return inc["incident_id"], key, t["node"]
            return None

        try:
            iid, series, node = _wait(fault_incident, 120, "an incident caused by the fault")
        except AssertionError as exc:
            seen = [
                (i["opened_at"] - scenario.fault_start_ts, t["node"], t["top_root_cause"])
                for i in svc.results.list_incidents(limit=200)
                for t in i["targets"].values()
            ]
            raise AssertionError(f"{exc}; root {root!r}; incidents seen: {seen}") from None
        assert svc.api_url is not None
        yield Stack(
            svc, svc.api_url, root, iid, series, node, settings.redis.prefix, redis_server.url
        )
    finally:
        stop.set()
        for close in svc.closers:
            close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[Any, str], Path]]:
    out = tmp_path_factory.mktemp("screens")

    def shot(driver: Any, name: str) -> Path:
        """A PNG of the whole page (beyond the viewport) at the window's width."""
        m = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = m["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path = out / f"{name}.png"
        path.write_bytes(base64.b64decode(data["data"]))
        return path

    yield shot
    dest = REPO / "artifacts" / "pages"
    dest.mkdir(parents=True, exist_ok=True)
    for png in out.glob("*.png"):
        shutil.copy2(png, dest / png.name)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1280,800",
    ):
        opts.add_argument(arg)
    d = webdriver.Chrome(options=opts, service=webdriver.ChromeService(CHROMEDRIVER))
    d.set_page_load_timeout(30)
    try:
        yield d
    finally:
        d.quit()


def _sign_in(driver: Any, stack: Stack, path: str = "/") -> None:
    driver.get(stack.url + path)
    if "/login" in driver.current_url:
        driver.find_element(By.ID, "token").send_keys(TOKEN + Keys.ENTER)
        WebDriverWait(driver, 10).until(lambda d: "/login" not in d.current_url)


def test_pages_refuse_access_without_the_token(driver: Any, stack: Stack, shots: Any) -> None:
    driver.delete_all_cookies()
    driver.get(f"{stack.url}/incidents/{stack.incident_id}")
    assert "/login" in driver.current_url
    assert stack.root not in driver.find_element(By.TAG_NAME, "main").text
    driver.find_element(By.ID, "token").send_keys("wrong" + Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: "Wrong token" in d.page_source)
    assert driver.get_cookie("causalwatch_session") is None
    shots(driver, "01-login-refused")
    with httpx.Client(base_url=stack.url, timeout=10, follow_redirects=False) as http:
        page = http.get("/")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert http.get("/events").status_code == 401
        assert http.get("/api/v1/incidents").status_code == 401
    # a forged cookie is no session
    forged = {"causalwatch_session": "0" * 64}
    with httpx.Client(base_url=stack.url, timeout=10, cookies=forged) as http:
        assert http.get("/").status_code == 303


def test_list_shows_the_incident_and_follows_new_ones_live(
    driver: Any, stack: Stack, shots: Any
) -> None:
    driver.delete_all_cookies()
    _sign_in(driver, stack)
    cookie = driver.get_cookie("causalwatch_session")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    row = driver.find_element(By.ID, f"inc-{stack.incident_id}")
    assert stack.root in row.text
    WebDriverWait(driver, 10).until(
        lambda d: d.find_element(By.ID, "live").text == "● live"
    )  # the event stream is open
    # a new explanation, published through the store (Redis pub/sub), appears unreloaded
    store = ResultStore(redis.Redis.from_url(stack.redis_url), prefix=stack.prefix)
    fresh = f"inc-live-{uuid.uuid4().hex[:6]}"
    store.publish([make_explanation(fresh, node="web", cause="cache")])
    WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.ID, f"inc-{fresh}"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#incident-rows tr")
    assert rows[0].get_attribute("id") == f"inc-{fresh}"  # newest first
    assert "cache" in rows[0].text
    shots(driver, "02-list-live")
    # filters: by node
    driver.get(f"{stack.url}/?node=web")
    ids = [
        r.get_attribute("id") for r in driver.find_elements(By.CSS_SELECTOR, "#incident-rows tr")
    ]
    assert ids == [f"inc-{fresh}"]


def test_incident_page_names_the_cause_and_draws_graph_and_series(
    driver: Any, stack: Stack, shots: Any
) -> None:
    _sign_in(driver, stack)
    driver.get(stack.url + "/")
    driver.find_element(By.CSS_SELECTOR, f"#inc-{stack.incident_id} a").click()
    WebDriverWait(driver, 10).until(lambda d: stack.incident_id in d.current_url)
    # the fault's downstream target (the one people are paged for)
    links = driver.find_elements(By.CSS_SELECTOR, "nav.targets a span")
    next(x for x in links if x.get_attribute("title") == stack.target_series).click()
    WebDriverWait(driver, 10).until(lambda d: "target=" in d.current_url)
    assert stack.root in driver.find_element(By.ID, "root-cause").text
    graph = driver.find_element(By.CSS_SELECTOR, "svg.graph")
    path = graph.get_attribute("data-path").split(" -> ")
    assert path[0] == stack.root and path[-1] == stack.target_node, path
    hot = driver.find_elements(By.CSS_SELECTOR, "svg.graph path.edge.on-path")
    assert sorted(
        (e.get_attribute("data-cause"), e.get_attribute("data-effect")) for e in hot
    ) == sorted(itertools.pairwise(path))
    assert all(e.get_attribute("stroke") == "#c2185b" for e in hot)
    assert driver.find_elements(
        By.CSS_SELECTOR, f'svg.graph g.node.on-path[data-node="{stack.root}"]'
    )
    target_node = driver.find_element(
        By.CSS_SELECTOR, f'svg.graph g.node.target[data-node="{stack.target_node}"]'
    )
    assert float(target_node.get_attribute("data-severity")) > 0
    plot = driver.find_element(By.CSS_SELECTOR, 'figure[data-role="target"] svg.plot')
    assert plot.get_attribute("data-series") == stack.target_series
    assert int(plot.get_attribute("data-points")) >= 100
    for part in ("polyline.value", "polyline.expected", "polygon.band", "rect.win-anomaly"):
        assert plot.find_elements(By.CSS_SELECTOR, part), part
    assert plot.size["width"] > 300 and plot.size["height"] > 80  # really laid out
    cands = driver.find_elements(By.CSS_SELECTOR, 'figure[data-role="candidate"] svg.plot')
    assert any(c.get_attribute("data-series").endswith(f'service="{stack.root}"}}') for c in cands)
    evidence = driver.find_element(By.ID, "ev-0")
    assert evidence.get_attribute("data-node") == stack.root
    assert driver.find_elements(By.CSS_SELECTOR, "svg.shares g.share")
    # 1280x800 without sideways scrolling
    assert driver.execute_script("return document.documentElement.scrollWidth") <= 1280
    driver.save_screenshot(str(shots(driver, "03-incident-1280").with_name("03-viewport.png")))


def test_incident_page_fits_a_phone(driver: Any, stack: Stack, shots: Any) -> None:
    _sign_in(driver, stack)
    driver.set_window_size(390, 844)
    try:
        driver.get(f"{stack.url}/incidents/{stack.incident_id}")
        inner = driver.execute_script("return window.innerWidth")
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= inner + 1, (width, inner)  # wide parts scroll inside their boxes
        assert driver.find_element(By.ID, "mark-fp").is_displayed()
        shots(driver, "04-incident-phone")
    finally:
        driver.set_window_size(1280, 800)


def test_feedback_buttons_change_the_incident(driver: Any, stack: Stack, shots: Any) -> None:
    _sign_in(driver, stack, f"/incidents/{stack.incident_id}")
    page = f"{stack.url}/incidents/{stack.incident_id}?target={stack.target_series}"
    driver.get(page)
    # mute the root-cause node for 15 minutes
    what = Select(driver.find_element(By.ID, "mute-what"))
    what.select_by_visible_text(f"node {stack.root} (all its series)")
    Select(driver.find_element(By.ID, "mute-duration")).select_by_value("900")
    driver.find_element(By.ID, "mute-btn").click()
    WebDriverWait(driver, 10).until(lambda d: "Muted" in d.find_element(By.ID, "result").text)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=stack.url, headers=auth, timeout=10) as http:
        mutes = http.get("/api/v1/mutes").json()["mutes"]
        assert any(m["matchers"] == {"service": stack.root} for m in mutes), mutes
        # mark a false positive with the keyboard only: Tab to the button, press Enter
        driver.find_element(By.TAG_NAME, "body").click()
        reached = []
        for _ in range(80):
            driver.switch_to.active_element.send_keys(Keys.TAB)
            reached.append(driver.switch_to.active_element.get_attribute("id"))
            if reached[-1] == "mark-fp":
                break
        assert reached[-1] == "mark-fp", reached
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "status").text == "false_positive"
        )
        assert "false positive" in driver.find_element(By.ID, "result").text
        shots(driver, "05-feedback-done")
        inc = http.get(f"/api/v1/incidents/{stack.incident_id}").json()
        assert inc["status"] == "false_positive"
    driver.get(page)  # the server says so too, after a reload
    assert driver.find_element(By.ID, "status").text == "false_positive"
    assert stack.root in driver.find_element(By.ID, "mutes").text
    # the session cookie cannot write without the page's header (no cross-site forms)
    cookie = driver.get_cookie("causalwatch_session")
    session = {"causalwatch_session": cookie["value"]}
    with httpx.Client(base_url=stack.url, timeout=10, cookies=session) as http:
        body = {"matchers": {"service": "x"}, "duration_s": 60}
        assert http.post("/api/v1/mutes", json=body).status_code == 403
        assert http.get("/api/v1/mutes").status_code == 200  # reads are fine
