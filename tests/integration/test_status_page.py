"""The status page in headless Chromium against a standalone daemon with 200 nodes known
from UDP reports: every node gets a row, the filter narrows them, and the page follows the
live feed (a reported status sent after the page loaded shows up without a reload).
The cluster-facts view (real nodes, pods and decisions) is tests/e2e/test_status_page.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import trio
from trio_websocket import open_websocket_url

from tests.cluster.daemon import EdgeSchedDaemon
from tests.integration.browser import chromium, screenshot_path
from tests.integration.resource_status_helpers import UPDATE, ask, host, report_nodes, start_daemon, ws_url

NODES = 200


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeSchedDaemon]:
    d = start_daemon(tmp_path_factory.mktemp("status-page"), RESOURCE_STATUS_UPDATE_INTERVAL="0.5")
    hosts = [h for i in range(NODES) for h in host(f"edge-{i:03d}", cpu_loads=(i % 100, 20),
                                                      gpu=(10.0, 50) if i % 10 == 0 else None)]
    report_nodes(d, hosts)
    yield d
    d.stop()


def send_update(d: EdgeSchedDaemon, **fields: object) -> None:
    async def go() -> None:
        async with open_websocket_url(ws_url(d)) as ws:
            reply = await ask(ws, {**UPDATE, **fields})
            assert reply["type"] == "update_ack", reply
            await ws.aclose()

    trio.run(go)


def test_two_hundred_nodes_render_filter_and_follow_the_feed(daemon: EdgeSchedDaemon) -> None:
    send_update(daemon, node_id="edge-007", cpu_status="error", overall_load=88)
    with chromium() as browser:
        # bypass_csp: the page forbids eval, which Playwright's wait_for_function uses.
        page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        started = time.monotonic()
        page.goto(daemon.url + "/")
        page.wait_for_selector("#conn[data-state=live]", timeout=10_000)
        page.wait_for_function(f"document.querySelectorAll('#node-rows tr[data-node]').length === {NODES}", timeout=10_000)
        assert time.monotonic() - started < 5
        assert page.inner_text("#n-nodes") == str(NODES)
        assert page.inner_text("#n-power") == str(NODES)
        row = page.locator("tr[data-node='edge-010']")
        assert "GPU 5.0/10.0 TFLOPS" in row.locator("[data-field=power]").inner_text()
        assert row.locator("[data-field=cpu] .val").inner_text() == "15.0%"  # (10 + 20) / 2
        assert page.locator("tr[data-node='edge-007'] [data-field=load]").inner_text() == "88.0%"

        # A status reported after the page loaded arrives with the next broadcast.
        updates_before = int(page.get_attribute("body", "data-updates") or 0)
        send_update(daemon, node_id="edge-123", cpu_status="busy", overall_load=33)
        page.wait_for_selector("tr[data-node='edge-123'] [data-field=load]:text('33.0%')", timeout=5_000)
        assert int(page.get_attribute("body", "data-updates") or 0) > updates_before

        page.fill("#filter", "edge-12")
        page.wait_for_function("document.querySelectorAll('#node-rows tr[data-node]').length === 10")
        assert page.inner_text("#shown") == f"10 of {NODES} shown"
        page.fill("#filter", "")
        page.check("#problems")  # busy/error reports and hot nodes only
        names = page.eval_on_selector_all("#node-rows tr[data-node]", "rows => rows.map(r => r.dataset.node)")
        assert {"edge-007", "edge-123"} <= set(names) and len(names) < NODES
        page.uncheck("#problems")
        page.screenshot(path=str(screenshot_path("status-page-200-nodes.png")))
        assert errors == []


def test_task_plans_show_when_the_planning_api_has_some(daemon: EdgeSchedDaemon) -> None:
    """The plans table follows `GET /task-planning/plans` (answered here by the browser, in the
    API's summary shape, so the page is tested whether or not planning is enabled); with no plans,
    or no planning API, the section stays hidden."""
    plans = {"plans": [{"plan_name": "etl", "phase": "running", "tasks": 3,
                        "task_phases": {"succeeded": 1, "running": 2}, "failed_tasks": []}]}
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900}, bypass_csp=True)
        page.goto(daemon.url + "/")
        page.wait_for_selector("#conn[data-state=live]", timeout=10_000)
        assert page.is_hidden("#plans-section")
        page.route("**/api/v1/task-planning/plans", lambda route: route.fulfill(json=plans))
        page.reload()
        page.wait_for_selector("tr[data-plan='etl']", timeout=10_000)
        assert page.is_visible("#plans-section")
        cells = page.eval_on_selector("tr[data-plan='etl']", "r => [...r.cells].map(c => c.innerText)")
        assert cells == ["etl", "running", "3", "succeeded 1 · running 2"]
