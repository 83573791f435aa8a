"""The console shell: layout, assets and CSP, dashboard and panels, sign-in pages, the model
admin, and the customer landing page."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.http import HttpResponse
from django.urls import path, resolve
from django.views.decorators.http import require_GET

from adminsite import dashboard
from adminsite.decorators import permission_required
from adminsite.navigation import url_exists
from adminsite.staticfinders import PACKAGE_DATA, PlotlyFinder
from tests.factories import PASSWORD, CustomerFactory, StaffFactory
from tests.roles import URLConf, assert_access_matrix, role_user

pytestmark = pytest.mark.django_db


def page_html(client, user, url="/admin/") -> str:
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200, response
    return response.content.decode()


@pytest.fixture
def extra_panels():
    """Register panels for one test; the registry is restored after."""
    saved = list(dashboard.PANELS)
    yield dashboard.register_panel
    dashboard.PANELS[:] = saved


# --- layout -----------------------------------------------------------------------------------


def test_layout_has_the_shell_pieces(client):
    user = role_user("ops")
    html = page_html(client, user)
    assert re.search(
        r'<script src="/static/django_htmx/htmx-2\.min\.js" defer nonce="[^"]+"></script>', html
    )
    assert '<script src="/static/adminsite/theme.js"></script>' in html  # synchronous: no flash
    assert 'href="/static/adminsite/console.css"' in html
    assert re.search(r"<body [^>]*hx-headers='\{\"X-CSRFToken\": \"[A-Za-z0-9]{32,}\"\}'", html)
    assert html.count("X-CSRFToken") == 1
    assert "data-theme-toggle" in html
    assert re.search(r'<form class="inline-form" method="post" action="/admin/logout/">', html)
    assert 'data-testid="user-role">Ops<' in html
    assert '<nav class="breadcrumbs"' in html
    assert user.get_full_name() in html


def test_every_script_is_same_origin_and_inline_code_needs_the_nonce(client):
    response = client.get("/admin/login/")
    html = response.content.decode()
    policy = response["Content-Security-Policy"]
    nonce = re.search(r"'nonce-([^']+)'", policy).group(1)
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
    assert scripts
    for attributes, body in scripts:
        source = re.search(r'src="([^"]+)"', attributes)
        if source:
            assert source.group(1).startswith("/static/"), attributes
            assert not body.strip()
        else:
            assert f'nonce="{nonce}"' in attributes, attributes
    assert not re.search(r'(src|href)="(https?:)?//', html), "no CDN or external asset"
    assert "'unsafe-inline'" not in re.search(r"script-src ([^;]+)", policy).group(1)


def test_plotly_is_served_from_the_installed_package(client):
    found = finders.find("plotly/plotly.min.js")
    assert found == str(PACKAGE_DATA / "plotly.min.js")
    assert [path for path, _storage in PlotlyFinder().list([])] == ["plotly.min.js"]
    assert finders.find("plotly/widgetbundle.js") is None
    response = client.get("/static/plotly/plotly.min.js")
    assert response.status_code == 200
    assert b"plotly" in b"".join(response.streaming_content)[:2000].lower()


# --- sidebar ---------------------------------------------------------------------------------


ONLY_JOBS_BUILT = URLConf("/admin/jobs/", bare=True)


def sidebar(html: str) -> list[str]:
    nav = re.search(r'data-testid="sidebar-nav">(.*?)</ul>', html, re.S).group(1)
    return re.findall(r"<span>([^<]+)</span></a>", nav)


def test_sections_whose_page_does_not_exist_are_hidden(client, settings):
    admin = role_user("admin")  # holds every permission: only missing pages hide sections
    assert not url_exists("/admin/no-such-section/")  # the model admin's catch-all does not count
    assert resolve("/admin/auth/").url_name == "app_list"
    assert not url_exists("/admin/auth/")  # nor does an app's model index

    settings.ROOT_URLCONF = URLConf(bare=True)
    assert sidebar(page_html(client, admin)) == ["Dashboard"]

    settings.ROOT_URLCONF = ONLY_JOBS_BUILT
    assert url_exists("/admin/jobs/") and not url_exists("/admin/support/")
    assert sidebar(page_html(client, admin)) == ["Dashboard", "Jobs"]


def test_the_current_section_is_marked(client, settings):
    settings.ROOT_URLCONF = ONLY_JOBS_BUILT
    html = page_html(client, role_user("admin"))
    assert re.search(r'<a href="/admin/" aria-current="page">', html)
    assert not re.search(r'<a href="/admin/jobs/" aria-current="page">', html)


# --- dashboard and panels -------------------------------------------------------------------------


def test_dashboard_shows_the_system_panel_and_the_console_card(
    client, django_assert_max_num_queries, extra_panels
):
    # The shell's own cost: other modules' panels are counted in their own tests.
    dashboard.PANELS[:] = [dashboard.get_panel("system")]
    user = role_user("agent")
    client.force_login(user)
    with django_assert_max_num_queries(6):
        response = client.get("/admin/")
    html = response.content.decode()
    assert "adminsite/dashboard.html" in [t.name for t in response.templates]
    assert 'hx-get="/admin/panels/system/" hx-trigger="every 30s" hx-swap="outerHTML"' in html
    for check in ("database", "redis", "workers"):
        assert re.search(
            rf'<li data-check="{check}">.*?class="badge badge-health-(healthy|warning|critical)"',
            html,
            re.S,
        )
    assert re.search(r'data-check="database">.*?badge-health-healthy', html, re.S)
    assert 'href="/admin/data/"' in html
    assert "Welcome back, " + user.first_name in html


def test_panel_view_renders_one_panel_alone(client, django_assert_max_num_queries):
    client.force_login(role_user("ops"))
    # Session, user, the user's and their groups' permissions (the panel's link to /admin/jobs/
    # is shown only to those who may open it), and the database check's SELECT 1.
    with django_assert_max_num_queries(5):
        response = client.get("/admin/panels/system/", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html and "sidebar" not in html
    assert html.strip().startswith('<section class="card panel" id="panel-system"')
    assert response["Cache-Control"].startswith("max-age=0")


def test_unknown_panel_is_404_and_a_panel_needs_its_permission(client, extra_panels):
    extra_panels(
        dashboard.Panel(
            key="jobs-queue",
            title="Jobs queue",
            permission="adminsite.view_jobs",
            template="adminsite/panels/system.html",
            context=dashboard.system_context,
            link="/admin/jobs/",
        )
    )
    client.force_login(role_user("agent"))
    assert client.get("/admin/panels/nope/").status_code == 404
    refused = client.get("/admin/panels/jobs-queue/")
    assert refused.status_code == 403
    assert "adminsite.view_jobs" in refused.content.decode()
    assert 'id="panel-jobs-queue"' not in client.get("/admin/").content.decode()

    client.force_login(role_user("ops"))
    assert client.get("/admin/panels/jobs-queue/").status_code == 200
    assert 'id="panel-jobs-queue"' in client.get("/admin/").content.decode()


def test_a_failing_panel_does_not_break_the_dashboard(client, extra_panels, caplog):
    def broken(request):
        raise RuntimeError("metrics store offline")

    extra_panels(
        dashboard.Panel(
            key="broken",
            title="Broken",
            permission=None,
            template="adminsite/panels/system.html",
            context=broken,
            link="",
        )
    )
    html = page_html(client, role_user("lead"))
    assert "This panel could not be loaded" in html
    assert 'id="panel-system"' in html
    assert any(record.message == "dashboard panel failed" for record in caplog.records)


def test_the_console_card_links_the_sections_no_panel_covers(client, settings):
    settings.ROOT_URLCONF = ONLY_JOBS_BUILT
    ops_html = page_html(client, role_user("ops"))
    card = re.search(r'data-testid="console-card">(.*?)</section>', ops_html, re.S).group(1)
    # /admin/jobs/ is the System panel's own page, so it is the panel's "Open" link instead.
    assert 'href="/admin/jobs/"' not in card
    assert re.search(
        r'id="panel-system".*?<a class="card-link" href="/admin/jobs/">', ops_html, re.S
    )
    lead_html = page_html(client, role_user("lead"))
    assert not re.search(r'<a class="card-link" href="/admin/jobs/">', lead_html), (
        "lead may not open Jobs"
    )


def test_an_expired_session_on_a_panel_refresh_sends_the_page_to_the_login(client):
    response = client.get(
        "/admin/panels/system/",
        headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/admin/?tab=1"},
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == "/admin/login/?next=/admin/%3Ftab%3D1"


# --- decorators for console views -------------------------------------------------------------


@require_GET
@permission_required("adminsite.view_jobs")
def guarded_page(request):
    return HttpResponse("guarded")


class GuardedURLConf(URLConf):
    def __init__(self):
        super().__init__(bare=True)
        self.urlpatterns.insert(0, path("admin/guarded/", guarded_page))


def test_permission_required_follows_the_role_matrix(client, settings):
    settings.ROOT_URLCONF = GuardedURLConf()
    assert_access_matrix(client, "/admin/guarded/", allowed={"admin", "ops"})
    client.force_login(role_user("ops"))
    response = client.get("/admin/guarded/")
    assert "no-cache" in response["Cache-Control"]  # console pages are never cached


# --- Django's model admin --------------------------------------------------------------------------


def test_model_admin_keeps_working_and_links_back_to_the_console(client):
    admin = role_user("admin")
    html = page_html(client, admin, "/admin/data/")
    assert "<title>Data admin | Adminsite</title>" in html
    assert 'href="/admin/auth/user/"' in html
    assert re.search(
        r'<a href="/admin/" data-testid="back-to-console">Back to the console</a>', html
    )
    changelist = page_html(client, admin, "/admin/auth/user/")
    assert admin.username in changelist
    assert 'data-testid="back-to-console"' in changelist


def test_staff_without_the_model_permission_get_a_styled_403(client):
    client.force_login(role_user("agent"))
    response = client.get("/admin/auth/user/")
    assert response.status_code == 403
    html = response.content.decode()
    assert "You do not have access to this page" in html
    assert 'data-testid="sidebar-nav"' in html  # staff see it inside the console


# --- sign-in ---------------------------------------------------------------------------------


def test_console_login_page(client):
    response = client.get("/admin/login/?next=/admin/data/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "adminsite/login.html" in [t.name for t in response.templates]
    assert 'action="/admin/login/?next=/admin/data/"' in html
    assert '<input type="hidden" name="next" value="/admin/data/">' in html
    assert 'href="/accounts/login/"' in html


def test_console_login_with_a_wrong_password_says_so(client):
    StaffFactory(username="sam")
    response = client.post("/admin/login/", {"username": "sam", "password": "wrong"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Please enter the correct username and password for a staff account" in html
    assert 'aria-invalid="true"' in html


def test_console_login_refuses_customers_and_admits_staff(client):
    CustomerFactory(username="maria")
    refused = client.post("/admin/login/", {"username": "maria", "password": PASSWORD})
    assert refused.status_code == 200
    assert "for a staff account" in refused.content.decode()

    StaffFactory(username="priya")
    admitted = client.post(
        "/admin/login/?next=/admin/", {"username": "priya", "password": PASSWORD, "next": "/admin/"}
    )
    assert admitted.status_code == 302 and admitted["Location"] == "/admin/"


def test_a_customer_opening_the_console_is_told_it_is_for_staff(client):
    client.force_login(role_user("customer"))
    response = client.get("/admin/", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain == [("/admin/login/?next=/admin/", 302)]
    assert "The console is for staff" in response.content.decode()


def test_signing_out_of_the_console(client):
    client.force_login(role_user("lead"))
    response = client.post("/admin/logout/", {"next": "/admin/login/?signed_out=1"}, follow=True)
    assert response.redirect_chain[-1][0] == "/admin/login/?signed_out=1"
    assert "You have signed out." in response.content.decode()
    assert client.get("/admin/").status_code == 302


@pytest.mark.parametrize(("who", "lands_on"), [("customer", "/accounts/"), ("staff", "/admin/")])
def test_accounts_login_sends_each_kind_of_user_home(client, who, lands_on):
    user = CustomerFactory() if who == "customer" else StaffFactory()
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == lands_on


def test_accounts_login_with_a_wrong_password_says_so(client):
    response = client.post("/accounts/login/", {"username": "nobody", "password": "x"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert 'href="/admin/login/"' in response.content.decode()


# --- the customer's landing page -------------------------------------------------------------------


def test_customer_home_shows_the_account(client, django_assert_max_num_queries):
    customer = CustomerFactory(first_name="Aiko", last_name="Tanaka")
    client.force_login(customer)
    with django_assert_max_num_queries(3):
        response = client.get("/accounts/")
    html = response.content.decode()
    assert "Aiko Tanaka" in html and customer.email in html
    assert 'data-testid="account-details"' in html
    assert 'action="/accounts/logout/"' in html


CUSTOMER_PAGES_BUILT = URLConf("/help/tickets/", "/shop/", bare=True)


def test_customer_home_links_only_the_pages_that_exist(client, settings):
    customer = CustomerFactory()
    settings.ROOT_URLCONF = URLConf(bare=True)
    html = page_html(client, customer, "/accounts/")
    assert 'data-testid="customer-links"' not in html

    settings.ROOT_URLCONF = URLConf("/shop/", bare=True)
    html = page_html(client, customer, "/accounts/")
    assert 'href="/shop/"' in html and 'href="/help/tickets/"' not in html

    settings.ROOT_URLCONF = CUSTOMER_PAGES_BUILT
    html = page_html(client, customer, "/accounts/")
    assert 'href="/help/tickets/"' in html and "My tickets" in html
    assert 'href="/shop/"' in html


def test_customer_signs_out_to_the_login_page(client):
    client.force_login(CustomerFactory())
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


# --- includes ----------------------------------------------------------------------------------


def test_badges_are_colour_coded_by_vocabulary():
    from django.template.loader import render_to_string

    html = render_to_string("includes/badge.html", {"kind": "status", "value": "on_hold"})
    assert html == '<span class="badge badge-status-on_hold" data-status="on_hold">On hold</span>\n'
    css = Path(finders.find("adminsite/console.css")).read_text()
    vocabularies = {
        "status": ["new", "open", "pending", "on_hold", "resolved", "closed"],
        "priority": ["low", "normal", "high", "urgent"],
        "severity": ["info", "warning", "critical"],
        "health": ["healthy", "warning", "critical"],
    }
    for kind, values in vocabularies.items():
        for value in values:
            assert f".badge-{kind}-{value}" in css, f"no colour for {kind} {value}"


def test_pagination_keeps_the_filters(rf):
    from django.core.paginator import Paginator
    from django.template.loader import render_to_string

    request = rf.get("/admin/support/", {"status": "open", "page": "2"})
    page = Paginator(list(range(95)), 10).page(2)
    html = render_to_string("includes/pagination.html", {"page_obj": page}, request=request)
    assert "11–20 of 95" in html
    assert 'href="?status=open&amp;page=3" rel="next"' in html
    assert 'href="?status=open&amp;page=2" aria-current="page"' in html
    assert "…" in html
