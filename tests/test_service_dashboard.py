"""The web dashboard at `/` in a real headless browser (Debian's chromium + chromium-driver,
driven by selenium) against a real `serve` subprocess with a token.

Without chromium this test FAILS, it does not skip: CI installs it (see .ci/run)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_util import Served, served, wait_for

TOKEN = "dash-test-token"
HEALTHY = [f"steady-{i:02d}" for i in range(20)]


def _find(env: str, *names: str) -> str:
    path = os.environ.get(env)
    if path:
        if not os.path.exists(path):
            pytest.fail(f"{env}={path} does not exist")
        return path
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                       else None)
        if found:
            return found
    pytest.fail(f"{names[0]} is not installed (apt-get install -y chromium chromium-driver; "
                f"or set {env}): the dashboard cannot be tested without a browser")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail("selenium is not installed (it is in the [test] extra)")
    options = webdriver.ChromeOptions()
    options.binary_location = _find("CHROMIUM", "chromium", "chromium-browser")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(
        _find("CHROMEDRIVER", "chromedriver")), options=options)
    try:
        yield driver
    finally:
        driver.save_screenshot(str(tmp_path / "dashboard.png"))   # kept by pytest for a look
        driver.quit()


@pytest.fixture
def server() -> Iterator[Served]:
    with served("--token", TOKEN, "--interval-ms", "60000", token=TOKEN) as s:
        agents = [{"id": i} for i in HEALTHY]
        # Silent from the start: serve starts an agent's clock at registration, so it is
        # FAILED after 2 x 200 ms without a heartbeat.
        agents.append({"id": "silent-agent", "interval_ms": 200, "failure_threshold": 2})
        assert s.post("/v1/agents", json={"agents": agents}).status_code == 200
        yield s


def _text(driver: Any, element_id: str) -> str:
    # One script: a node the page re-renders between find and read cannot go stale.
    return str(driver.execute_script(
        "const e = document.getElementById(arguments[0]); return e ? e.innerText : '';",
        element_id))


def _row(driver: Any, agent: str) -> dict[str, Any] | None:
    """One agent's row of the unhealthy table, read in one script (no stale elements)."""
    row: dict[str, Any] | None = driver.execute_script("""
        const tr = document.querySelector(`#unhealthy-table tr[data-agent='${arguments[0]}']`);
        if (!tr) return null;
        const a = tr.querySelector("a");
        return {state: tr.dataset.state, text: tr.innerText,
                link: a ? a.textContent : null, href: a ? a.href : null,
                rows: document.querySelectorAll("#unhealthy-table tbody tr").length};
    """, agent)
    return row


def _number(driver: Any, element_id: str) -> float | None:
    text = _text(driver, element_id).replace(",", "")
    try:
        return float(text)
    except ValueError:
        return None


def test_dashboard_shows_counts_and_lists_the_failed_agent(server: Served, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    stop = threading.Event()

    def heartbeats() -> None:         # the healthy agents keep beating, over HTTP
        while not stop.wait(0.1):
            server.post("/v1/heartbeats", json={"ids": HEALTHY})

    beater = threading.Thread(target=heartbeats, daemon=True)
    beater.start()
    try:
        browser.get(server.url + "/")
        # Every /v1 call answers 401 without the token: the page asks for it.
        dialog = browser.find_element(By.ID, "token-dialog")
        wait_for(dialog.is_displayed, timeout=10)
        browser.find_element(By.ID, "token-input").send_keys("wrong-token")
        browser.find_element(By.ID, "token-submit").click()
        # A rejected token: asked again, with the error shown.
        wait_for(lambda: dialog.is_displayed()
                 and browser.find_element(By.ID, "token-error").is_displayed(), timeout=10)
        browser.find_element(By.ID, "token-input").send_keys(TOKEN)
        browser.find_element(By.ID, "token-submit").click()
        wait_for(lambda: not dialog.is_displayed(), timeout=5)

        # The counts, from /v1/stats.
        wait_for(lambda: _number(browser, "count-total") == 21, timeout=10)
        wait_for(lambda: _number(browser, "count-failed") == 1, timeout=10)
        assert _number(browser, "count-healthy") == 20
        assert _number(browser, "count-degraded") == 0
        # The failed agent, listed by name with its state and settings, linkable. The table
        # is rebuilt on every refresh, so each look at it is one atomic read (_row).
        row = wait_for(lambda: (r := _row(browser, "silent-agent")) and "200 ms" in r["text"]
                       and r, timeout=10)                # details from /v1/agents/{id}
        assert row["state"] == "failed"
        assert "failed" in row["text"]
        assert row["link"] == "silent-agent"
        assert row["href"].endswith("#agent=silent-agent")
        assert row["rows"] == 1
        # Heartbeats per second, from the deltas of /v1/stats (20 ids every 0.1 s).
        wait_for(lambda: (_number(browser, "hb-rate") or 0) > 20, timeout=10)

        # A crossing after the page is live arrives over the SSE stream (read with the
        # bearer header), with its detection latency.
        assert server.post("/v1/agents", json={"agents": [
            {"id": "late-agent", "interval_ms": 200, "failure_threshold": 3}]}).status_code == 200
        events = browser.find_element(By.ID, "events")
        wait_for(lambda: "late-agent" in events.text and "failed" in events.text, timeout=10)
        assert " ms" in events.text                       # "+x ms": detected - deadline
        wait_for(lambda: _text(browser, "latency").endswith(" ms"), timeout=5)
        wait_for(lambda: _number(browser, "count-failed") == 2, timeout=10)

        # The agent's page: details and history from the API.
        wait_for(lambda: browser.execute_script(
            "const a = document.querySelector(\"tr[data-agent='silent-agent'] a\");"
            "if (a) a.click(); return a !== null;"), timeout=5)
        panel = browser.find_element(By.ID, "agent-panel")
        wait_for(panel.is_displayed, timeout=5)
        wait_for(lambda: "200 ms" in panel.text and "failed" in panel.text, timeout=10)
        assert _text(browser, "agent-title") == "silent-agent"
        assert "No heartbeat recorded" in panel.text and "never" in panel.text

        # The token is kept: a reload does not ask again.
        browser.get(server.url + "/")
        wait_for(lambda: _number(browser, "count-total") == 22, timeout=10)
        assert not browser.find_element(By.ID, "token-dialog").is_displayed()
        assert browser.execute_script(
            "return localStorage.getItem('moai-flow-fast:token')") == TOKEN
    finally:
        stop.set()
        beater.join(5)
