"""The console dashboard in Chromium: each role signs in through /admin/login/, sees exactly
its sidebar sections, the System panel and its role; the theme toggle switches and persists."""

from __future__ import annotations

import re

import pytest

from tests.factories import PASSWORD, CustomerFactory, StaffFactory
from tests.roles import STAFF_ROLE_NAMES, expected_sidebar

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = {"width": 390, "height": 844}


def theme_of(page) -> str:
    return page.evaluate("document.documentElement.dataset.theme")


def background_of(page) -> str:
    return page.evaluate("getComputedStyle(document.body).backgroundColor")


@pytest.mark.parametrize("role", list(STAFF_ROLE_NAMES))
def test_each_role_signs_in_and_sees_its_sidebar(browsing, screenshot, role):
    user = StaffFactory(
        username=f"{role}-e2e", role=STAFF_ROLE_NAMES[role], first_name="Robin", last_name="Hale"
    )
    session = browsing()
    page = session.login(user.username, PASSWORD)

    assert page.url == f"{session.base_url}/admin/"
    assert page.locator("h1").inner_text() == "Welcome back, Robin"
    assert page.get_by_test_id("user-role").inner_text() == STAFF_ROLE_NAMES[role]
    labels = [
        label.strip() for label in page.get_by_test_id("sidebar-nav").locator("a").all_inner_texts()
    ]
    assert labels == expected_sidebar(role)

    checks = page.get_by_test_id("system-checks").locator("li")
    assert checks.count() == 3
    for name in ("database", "redis", "workers"):
        badge = page.locator(f'[data-check="{name}"] .badge')
        assert badge.get_attribute("data-health") in {"healthy", "warning", "critical"}
    assert page.locator('[data-check="database"] .badge').get_attribute("data-health") == "healthy"
    # Panels of other sections only for the roles that may open those sections.
    assert page.locator("#panel-jobs").count() == (1 if role in {"admin", "ops"} else 0)
    assert page.locator("#panel-audit").count() == (1 if role in {"admin", "lead"} else 0)
    assert (
        page.get_by_test_id("console-card")
        .get_by_role("link", name=re.compile("Data admin"))
        .is_visible()
    )

    screenshot(page, f"dashboard-{role}-light")


def test_theme_toggle_switches_to_dark_and_is_remembered(browsing, screenshot):
    user = StaffFactory(
        username="theme-e2e", role=STAFF_ROLE_NAMES["admin"], first_name="Dana", last_name="Park"
    )
    session = browsing(color_scheme="light")
    page = session.login(user.username, PASSWORD)
    assert theme_of(page) == "light"
    light_background = background_of(page)

    page.get_by_role("button", name="Switch to dark theme").click()
    assert theme_of(page) == "dark"
    assert background_of(page) != light_background
    assert page.evaluate("localStorage.getItem('theme')") == "dark"
    screenshot(page, "dashboard-admin-dark")

    # Remembered across pages, applied before the first paint: the stylesheet's first
    # computed background is already the dark one.
    page.goto("/admin/data/")
    # Django's model admin reads the same stored choice.
    assert theme_of(page) == "dark"
    screenshot(page, "data-admin-dark")
    page.goto("/admin/")
    assert theme_of(page) == "dark"
    assert background_of(page) != light_background

    page.get_by_role("button", name="Switch to light theme").click()
    assert theme_of(page) == "light"
    assert page.evaluate("localStorage.getItem('theme')") == "light"
    page.goto("/admin/auth/user/")
    assert theme_of(page) == "light"
    page.get_by_test_id("back-to-console").wait_for()
    screenshot(page, "data-admin-users-light")


def test_the_system_preference_is_the_default_theme(browsing, screenshot):
    session = browsing(color_scheme="dark")
    page = session.page
    page.goto("/admin/login/")
    assert theme_of(page) == "dark"
    screenshot(page, "login-dark")
    # Without a stored choice the page follows the system when it changes (an async event).
    page.emulate_media(color_scheme="light")
    page.wait_for_function("document.documentElement.dataset.theme === 'light'", timeout=5_000)
    screenshot(page, "login-light")


def test_panels_refresh_through_htmx(browsing):
    user = StaffFactory(username="refresh-e2e", role=STAFF_ROLE_NAMES["ops"])
    session = browsing()
    page = session.page
    page.clock.install()
    session.login(user.username, PASSWORD)
    with page.expect_response(
        lambda r: r.url.endswith("/admin/panels/system/") and r.status == 200
    ):
        page.clock.run_for(31_000)
    page.locator("#panel-system").wait_for()
    assert page.locator("#panel-system [data-check]").count() == 3


def test_phone_layout(browsing, screenshot):
    user = StaffFactory(
        username="phone-e2e", role=STAFF_ROLE_NAMES["lead"], first_name="Kim", last_name="Ito"
    )
    session = browsing(viewport=PHONE)
    page = session.login(user.username, PASSWORD)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page scrolls sideways on a phone ({width}px wide)"
    screenshot(page, "dashboard-lead-phone")


def test_customer_is_told_the_console_is_for_staff(browsing, screenshot):
    customer = CustomerFactory(username="customer-e2e", first_name="Maria", last_name="Garcia")
    session = browsing()
    page = session.login(customer.username, PASSWORD, path="/accounts/login/")
    assert page.url == f"{session.base_url}/accounts/"
    screenshot(page, "customer-home")

    page.goto("/admin/")
    assert page.url.startswith(f"{session.base_url}/admin/login/")
    assert "The console is for staff" in page.get_by_test_id("staff-only").inner_text()
    screenshot(page, "admin-login-as-customer")


def test_wrong_password_shows_a_clear_error(browsing, screenshot):
    StaffFactory(username="typo-e2e", role=STAFF_ROLE_NAMES["agent"])
    session = browsing()
    page = session.page
    page.goto("/admin/login/")
    page.fill("#id_username", "typo-e2e")
    page.fill("#id_password", "not-the-password")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert "correct username and password" in page.get_by_test_id("login-error").inner_text()
    screenshot(page, "admin-login-error")
