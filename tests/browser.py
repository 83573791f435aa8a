"""Browser fixtures (a pytest plugin loaded by tests/conftest.py, so every folder shares one
Playwright session): real Chromium against a live server (pytest-django's ``live_server``) via Playwright.

Chromium is Debian's /usr/bin/chromium (``CHROMIUM`` overrides the path). Without it the tests
are skipped with a message, except under CI (``CI`` set), where a missing browser fails.
Screenshots go to artifacts/screenshots/ (git-ignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Playwright's sync API runs an asyncio event loop in this thread; Django would otherwise
# refuse ORM calls made from the test body ("You cannot call this from an async context").
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
E2E_DIR = Path(__file__).resolve().parent / "e2e"
DESKTOP = {"width": 1440, "height": 900}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if E2E_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).is_file():
        message = (
            f"Chromium not found at {CHROMIUM}: install it (apt install chromium) or set CHROMIUM"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


class Browsing:
    """A browser context on the live server that records page errors (a CSP violation or a
    JavaScript exception fails the test that caused it)."""

    def __init__(self, browser, base_url: str, *, viewport: dict, color_scheme: str):
        self.base_url = base_url
        self.errors: list[str] = []
        self.context = browser.new_context(
            viewport=viewport, color_scheme=color_scheme, base_url=base_url
        )
        self.context.set_default_timeout(10_000)
        self.page = self.new_page()

    def new_page(self):
        page = self.context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.errors.append(f"console {msg.type}: {msg.text}")
                if msg.type == "error"
                else None
            ),
        )
        return page

    def login(self, username: str, password: str, *, path: str = "/admin/login/"):
        page = self.page
        page.goto(path)
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        return page

    def close(self):
        self.context.close()


@pytest.fixture
def browsing(browser, live_server, transactional_db):
    """``browsing(viewport={"width": 390, "height": 844}, color_scheme="dark")`` opens a fresh
    browser context on the live server."""
    opened = []

    def open_context(*, viewport: dict = DESKTOP, color_scheme: str = "light") -> Browsing:
        session = Browsing(browser, live_server.url, viewport=viewport, color_scheme=color_scheme)
        opened.append(session)
        return session

    yield open_context
    for session in opened:
        session.close()
    errors = [error for session in opened for error in session.errors]
    assert not errors, "the browser reported errors:\n" + "\n".join(errors)


@pytest.fixture
def screenshot():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, *, full_page: bool = True) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take
