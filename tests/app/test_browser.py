"""The explorer in a real browser: ``streamlit run`` on a free localhost port, every page opened in
headless Chromium (Debian's ``chromium``, driven by Playwright), no error element, one screenshot each.

Screenshots go to the test's tmp dir and are copied to ``/tmp/screenshots`` for review.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.conftest import APP

CHROMIUM = next(
    (p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and os.path.exists(p)), None
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PAGES = {
    "": "Model & prompt",  # the default page lives at the root URL
    "patching": "Patching",
    "circuit": "Circuit",
    "feature-circuit": "Feature circuit",
    "edge-circuit": "Edge circuit",
    "heads": "Heads",
    "features": "Features",
    "training": "Training runs",
}
REVIEW_DIR = Path("/tmp/screenshots")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium: run `bash scripts/system-deps.sh` (Debian)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def run_server(dictionary_dir: Path, runs_dir: Path) -> Iterator[str]:
    """A fresh ``streamlit run`` of the explorer on a free localhost port; yields its URL."""
    port = _free_port()
    env = {
        **os.environ,
        "CIRCUITKIT_DICTIONARIES": str(dictionary_dir.parent),
        "CIRCUITKIT_RUNS": str(runs_dir),
    }
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited early:\n{proc.stdout.read().decode()}") from None
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not become healthy within 120 s")
    try:
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and only its own children (own session)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(dictionary_dir, runs_dir):
    with run_server(dictionary_dir, runs_dir) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield b
        b.close()


def _charts_drawn(page) -> bool:
    """Every plotly chart on the page has drawn its SVG (plotly.js loads lazily)."""
    charts = page.locator('[data-testid="stPlotlyChart"]')
    return all(charts.nth(i).locator(".main-svg").count() > 0 for i in range(charts.count()))


def _wait_until_done(page, timeout_s: float = 240) -> None:
    """The run is finished when the status widget is gone and stays gone for a moment."""
    deadline = time.time() + timeout_s
    quiet_since = None
    while time.time() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.time()
        elif time.time() - quiet_since > 1.5 and _charts_drawn(page):
            return
        page.wait_for_timeout(250)
    raise AssertionError("the page was still running after the timeout")


@pytest.mark.parametrize("path", list(PAGES))
def test_page_renders_without_errors_in_chromium(path, server, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    outside: list[str] = []  # the app must work offline: nothing fetched beyond the server
    page.on(
        "request", lambda r: None if r.url.startswith((server, "data:", "blob:")) else outside.append(r.url)
    )
    try:
        page.goto(f"{server}/{path}", wait_until="domcontentloaded", timeout=60_000)
        page.wait_for_selector('[data-testid="stAppViewContainer"]', timeout=60_000)
        page.locator("h1", has_text=PAGES[path]).first.wait_for(timeout=240_000)
        _wait_until_done(page)
        shot = tmp_path / f"{path or 'model'}.png"
        page.screenshot(path=str(shot), full_page=True)
        REVIEW_DIR.mkdir(exist_ok=True)
        shutil.copy(shot, REVIEW_DIR / shot.name)
        exceptions = page.locator('[data-testid="stException"]')
        errors = page.locator('[data-testid="stAlertContentError"]')
        assert page.get_by_text("Page not found").count() == 0
        assert exceptions.count() == 0, exceptions.first.inner_text()
        assert errors.count() == 0, errors.first.inner_text()
        assert not outside, outside[:5]
    finally:
        page.close()


# Deep links on a server that has never served ``/``: the first is the very first request of a freshly
# started server. Before the fix every one (valid ones too) crashed with ``KeyError: st.session_state
# has no key "selection"`` because Streamlit served a ``pages/`` file directly, without the router, until
# someone opened ``/``. Bad values render with a notice.
DEEP_LINKS = [
    ("patching?model=ck-tiny&method=atp", "Patching", None),
    ("features?latent=999999", "Features", "latent=999999"),
    ("circuit?k_heads=0", "Circuit", "k_heads=0"),
]


@pytest.fixture(scope="module")
def fresh_server(dictionary_dir, runs_dir):
    """A second server, only ever sent deep links (never ``/``)."""
    with run_server(dictionary_dir, runs_dir) as url:
        yield url


@pytest.mark.parametrize(("link", "title", "notice"), DEEP_LINKS)
def test_deep_link_renders_on_a_fresh_server(link, title, notice, fresh_server, browser):
    url = fresh_server
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{url}/{link}", wait_until="domcontentloaded", timeout=60_000)
        exceptions = page.locator('[data-testid="stException"]')
        # The title, or the exception that replaced the page (fails at once instead of timing out).
        page.locator("h1", has_text=title).or_(exceptions).first.wait_for(timeout=240_000)
        assert exceptions.count() == 0, exceptions.first.inner_text()
        _wait_until_done(page)
        assert exceptions.count() == 0, exceptions.first.inner_text()
        errors = page.locator('[data-testid="stAlertContentError"]')
        assert errors.count() == 0, errors.first.inner_text()
        assert page.get_by_text("KeyError").count() == 0
        if notice is not None:
            warning = page.locator('[data-testid="stAlertContentWarning"]', has_text=notice)
            assert warning.count() >= 1
    finally:
        page.close()
