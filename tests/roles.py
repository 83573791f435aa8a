"""The role/URL access matrix: who may open what, checked for every role in one place.

Each section adds its pages and endpoints to ``URL_MATRIX`` (tests/adminsite/test_roles.py
runs every row); a test can also check one URL on its own::

    assert_access_matrix(client, "/admin/support/", allowed={"admin", "lead", "agent", "ops"})
    assert_access_matrix(client, "/api/admin/monitoring/rules", allowed={"admin", "ops"},
                         method="post", data={...}, status=201)

Roles: admin, lead, agent, ops (staff, one per group of adminsite/roles.py), customer (a
signed-in non-staff user) and anonymous. Allowed roles must get ``status`` (200 unless
given). The others must be refused the standard way:

    page (not under /api/)   anonymous -> redirect to a login page
                             customer  -> redirect to a login page, or 403
                             staff     -> 403
    API (under /api/)        anonymous -> 401, everyone else -> 403

``expect`` overrides the outcome for named roles: a status code, or a path the response must
redirect to (e.g. staff opening a customer page are sent to /admin/).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.http import HttpResponse
from django.urls import path

from adminsite import roles
from tests.factories import CustomerFactory, StaffFactory

STAFF_ROLE_NAMES = {
    "admin": roles.ADMIN,
    "lead": roles.SUPPORT_LEAD,
    "agent": roles.SUPPORT_AGENT,
    "ops": roles.OPS,
}
ROLE_USERS = (*STAFF_ROLE_NAMES, "customer", "anonymous")
STAFF = frozenset(STAFF_ROLE_NAMES)
EVERYONE = frozenset(ROLE_USERS)
SIGNED_IN = EVERYONE - {"anonymous"}

LOGIN_PATHS = ("/admin/login/", "/accounts/login/")
REDIRECTS = (301, 302, 303, 307, 308)


@dataclass(frozen=True)
class Access:
    """One row of the matrix: ``url`` answered with ``status`` to ``allowed`` roles."""

    url: str
    allowed: frozenset[str] | set[str]
    method: str = "get"
    status: int = 200
    data: dict | None = None
    expect: Mapping[str, int | str] = field(default_factory=dict)

    def __str__(self) -> str:  # the test id
        return f"{self.method.upper()} {self.url}"


URL_MATRIX: list[Access] = [
    Access("/admin/", STAFF),
    Access("/admin/data/", STAFF),
    # Django's model admin: only roles holding auth's view_user permission.
    Access("/admin/auth/user/", {"admin"}),
    Access("/admin/panels/system/", STAFF),
    Access("/accounts/", {"customer"}, expect=dict.fromkeys(STAFF, "/admin/")),
    # Support: every staff role reads the queue; changes need a role that works tickets (Ops
    # is read-only). An empty POST passes the permission gate and is refused as bad input.
    # Pages of one ticket are in tests/tickets/test_views.py (they need a ticket).
    Access("/admin/support/", STAFF),
    Access("/admin/support/?status=all&ordering=-updatedAt", STAFF),
    Access("/admin/support/999999/", STAFF, status=404),
    Access("/admin/support/bulk/", STAFF - {"ops"}, method="post", data={}, status=400),
    Access("/admin/support/views/", STAFF - {"ops"}, method="post", data={}, status=400),
    # SLA and assignment: leads (and admins) manage policies, calendars, routing and caps; Ops
    # reads them; agents set their own availability and read their notifications. Empty
    # POSTs pass the permission gate and are refused as bad input.
    Access("/admin/support/sla/", {"admin", "lead", "ops"}),
    Access("/admin/support/sla/?weeks=4&format=csv", {"admin", "lead", "ops"}),
    Access("/admin/support/sla/policies/", {"admin", "lead", "ops"}),
    Access(
        "/admin/support/sla/policies/",
        {"admin", "lead"},
        method="post",
        data={},
        status=400,
    ),
    Access("/admin/support/sla/policies/999999/", {"admin", "lead", "ops"}, status=404),
    Access(
        "/admin/support/sla/policies/999999/delete/",
        {"admin", "lead"},
        method="post",
        data={},
        status=404,
    ),
    Access("/admin/support/sla/calendars/", {"admin", "lead", "ops"}),
    Access(
        "/admin/support/sla/calendars/",
        {"admin", "lead"},
        method="post",
        data={},
        status=400,
    ),
    Access("/admin/support/sla/calendars/999999/", {"admin", "lead", "ops"}, status=404),
    Access(
        "/admin/support/sla/calendars/999999/holidays/",
        {"admin", "lead"},
        method="post",
        data={},
        status=404,
    ),
    Access("/admin/support/agents/", {"admin", "lead", "ops"}),
    Access("/admin/support/agents/999999/", {"admin", "lead"}, method="post", data={}, status=404),
    Access("/admin/support/agents/routing/", {"admin", "lead"}, method="post", data={}, status=400),
    Access("/admin/support/agents/teams/", {"admin", "lead"}, method="post", data={}, status=400),
    Access(
        "/admin/support/agents/teams/999999/", {"admin", "lead"}, method="post", data={}, status=404
    ),
    Access("/admin/support/me/", STAFF),
    Access("/admin/support/me/availability/", STAFF - {"ops"}, method="post", data={}, status=400),
    Access("/admin/support/notifications/", STAFF),
    Access("/admin/support/notifications/read/", STAFF, method="post", data={}, status=303),
    # Merging a duplicate works tickets (change_ticket: not Ops); pages of a real ticket are in
    # tests/tickets/test_merge_view.py. Canned replies: every staff role reads them, Support
    # Leads and Admins keep them (tests/tickets/test_canned_replies_view.py for a real one).
    # A customer's support plan, set from the ticket page's customer card.
    Access(
        "/admin/support/999999/customer-tier/",
        {"admin", "lead"},
        method="post",
        data={"tier": "business"},
        status=404,
    ),
    Access("/admin/support/999999/merge/", STAFF - {"ops"}, status=404),
    Access(
        "/admin/support/999999/merge/",
        STAFF - {"ops"},
        method="post",
        data={"into": "1"},
        status=404,
    ),
    Access("/admin/support/canned-replies/", STAFF),
    Access("/admin/support/canned-replies/", {"admin", "lead"}, method="post", data={}, status=400),
    Access("/admin/support/canned-replies/999999/", STAFF, status=404),
    Access(
        "/admin/support/canned-replies/999999/",
        {"admin", "lead"},
        method="post",
        data={},
        status=404,
    ),
    Access("/admin/support/canned-replies/999999/delete/", {"admin", "lead"}, status=404),
    Access(
        "/admin/support/canned-replies/999999/delete/",
        {"admin", "lead"},
        method="post",
        data={},
        status=404,
    ),
    # Customer help pages: staff are sent to the console's page for the same thing.
    Access("/help/tickets/", {"customer"}, expect=dict.fromkeys(STAFF, "/admin/support/")),
    Access("/help/tickets/new/", {"customer"}, expect=dict.fromkeys(STAFF, "/admin/support/")),
    Access(
        "/help/tickets/new/",
        {"customer"},
        method="post",
        data={},
        status=400,
        expect=dict.fromkeys(STAFF, "/admin/support/"),
    ),
    Access(
        "/help/tickets/999999/",
        {"customer"},
        status=404,
        expect=dict.fromkeys(STAFF, "/admin/support/999999/"),
    ),
    # Impersonation: Admin and Support Lead read the sessions and may start one (an empty
    # POST passes the permission gate and is refused as bad input); ending someone else's
    # session is checked per session in tests/impersonation/test_views.py. Stop is for
    # whoever is impersonating, who is signed in as the customer: everyone else who is
    # signed in is told there is nothing to stop.
    Access("/admin/impersonation/", {"admin", "lead"}),
    Access("/admin/impersonation/?status=ended&end_reason=expired", {"admin", "lead"}),
    Access("/admin/impersonation/999999/", {"admin", "lead"}, status=404),
    Access("/admin/impersonation/start", {"admin", "lead"}, method="post", data={}, status=400),
    Access(
        "/admin/impersonation/999999/end", {"admin", "lead"}, method="post", data={}, status=404
    ),
    Access("/admin/impersonation/stop", SIGNED_IN, method="post", data={}, status=400),
    Access("/admin/panels/impersonation/", {"admin", "lead"}),
    # Monitoring: Ops and Admin. An empty object passes the permission gate of the ingestion
    # API and is refused as bad input (the body must be a list).
    Access("/api/admin/monitoring/metrics", {"admin", "ops"}, method="post", data={}, status=400),
    Access("/admin/monitoring/", {"admin", "ops"}),
    Access("/admin/monitoring/?range=7d", {"admin", "ops"}),
    Access("/admin/monitoring/explorer/?metric=api_latency_ms", {"admin", "ops"}),
    Access("/admin/panels/monitoring/", {"admin", "ops"}),
    # Shop console: Admin, and Support Lead reading orders and the catalogue to help customers.
    # Refunds, fulfilment, catalogue sync and Stripe's raw events are Admin's. One order's pages
    # are in tests/shop/test_console.py (they need an order).
    Access("/admin/shop/", {"admin", "lead"}),
    Access("/admin/shop/?status=paid&date_from=2026-01-01&amount_min=10", {"admin", "lead"}),
    Access("/admin/shop/orders/999999/", {"admin", "lead"}, status=404),
    Access("/admin/shop/orders/999999/refund", {"admin"}, method="post", data={}, status=404),
    Access("/admin/shop/orders/999999/fulfil", {"admin"}, method="post", data={}, status=404),
    Access("/admin/shop/catalogue/", {"admin", "lead"}),
    Access("/admin/shop/catalogue/sync", {"admin"}, method="post", data={}, status=303),
    Access("/admin/shop/webhooks/", {"admin"}),
    Access("/admin/shop/webhooks/?status=processed", {"admin"}),
    Access("/admin/shop/webhooks/999999/reprocess", {"admin"}, method="post", data={}, status=404),
    Access("/admin/panels/shop/", {"admin", "lead"}),
    # Shop, customer side: the catalogue and the cart are open to anonymous visitors (their cart
    # joins their account at sign-in); checkout and orders need a customer. Staff are sent to
    # the console's page for the same thing.
    Access(
        "/shop/", {"customer", "anonymous"}, expect=dict.fromkeys(STAFF, "/admin/shop/catalogue/")
    ),
    Access("/shop/cart/", {"customer", "anonymous"}, expect=dict.fromkeys(STAFF, "/admin/shop/")),
    Access(
        "/shop/cart/add/",
        {"customer", "anonymous"},
        method="post",
        data={},
        status=400,
        expect=dict.fromkeys(STAFF, "/admin/shop/"),
    ),
    Access(
        "/shop/cart/update/",
        {"customer", "anonymous"},
        method="post",
        data={},
        status=400,
        expect=dict.fromkeys(STAFF, "/admin/shop/"),
    ),
    Access("/shop/checkout/", {"customer"}, expect=dict.fromkeys(STAFF, "/admin/shop/")),
    Access("/shop/orders/", {"customer"}, expect=dict.fromkeys(STAFF, "/admin/shop/")),
    Access(
        "/shop/orders/999999/",
        {"customer"},
        status=404,
        expect=dict.fromkeys(STAFF, "/admin/shop/orders/999999/"),
    ),
    # Stripe's endpoint answers whoever calls; without a valid signature that is a 400.
    Access("/stripe/webhook", EVERYONE, method="post", data={}, status=400),
    # Alerting: Ops and Admin manage rules, alerts and silences (monitoring.* permissions).
    # Empty POSTs pass the permission gate and are refused as bad input or an unknown id.
    Access("/admin/monitoring/rules/", {"admin", "ops"}),
    Access("/admin/monitoring/rules/new/", {"admin", "ops"}),
    Access("/admin/monitoring/rules/new/", {"admin", "ops"}, method="post", data={}, status=400),
    Access("/admin/monitoring/rules/preview/?metric=api_latency_ms", {"admin", "ops"}),
    Access("/admin/monitoring/rules/999999/", {"admin", "ops"}, status=404),
    Access("/admin/monitoring/rules/999999/toggle/", {"admin", "ops"}, method="post", status=404),
    Access(
        "/admin/monitoring/rules/999999/duplicate/", {"admin", "ops"}, method="post", status=404
    ),
    Access("/admin/monitoring/rules/999999/delete/", {"admin", "ops"}, method="post", status=404),
    Access("/admin/monitoring/alerts/", {"admin", "ops"}),
    Access("/admin/monitoring/alerts/?status=open&severity=critical", {"admin", "ops"}),
    Access("/admin/monitoring/alerts/999999/", {"admin", "ops"}, status=404),
    Access("/admin/monitoring/alerts/999999/resolve/", {"admin", "ops"}, method="post", status=404),
    Access(
        "/admin/monitoring/alerts/999999/acknowledge/", {"admin", "ops"}, method="post", status=404
    ),
    Access("/admin/monitoring/active-alerts/", {"admin", "ops"}),
    Access("/admin/monitoring/silences/", {"admin", "ops"}),
    Access("/admin/monitoring/silences/new/", {"admin", "ops"}, method="post", data={}, status=400),
    Access("/admin/monitoring/silences/999999/end/", {"admin", "ops"}, method="post", status=404),
    Access("/api/admin/monitoring/alerts", {"admin", "ops"}),
    Access("/api/admin/monitoring/alerts/?status=open", {"admin", "ops"}),
    Access(
        "/api/admin/monitoring/alerts/999999/resolve", {"admin", "ops"}, method="post", status=404
    ),
    Access(
        "/api/admin/monitoring/alerts/999999/acknowledge/",
        {"admin", "ops"},
        method="post",
        status=404,
    ),
    Access("/api/admin/monitoring/rules", {"admin", "ops"}),
    Access("/api/admin/monitoring/rules/", {"admin", "ops"}, method="post", data={}, status=400),
    Access("/api/admin/monitoring/rules/999999", {"admin", "ops"}, status=404),
    # Background jobs: Ops and Admin (view_jobs, run_jobs). "Run now" of a job that does not
    # exist passes the permission gate and is answered 404; a job's own page is checked in
    # tests/adminsite/test_jobs_views.py (it needs a recorded run to be meaningful).
    Access("/admin/jobs/", {"admin", "ops"}),
    Access("/admin/jobs/no.such.job/", {"admin", "ops"}, status=404),
    Access("/admin/jobs/no.such.job/run", {"admin", "ops"}, method="post", data={}, status=404),
    Access("/admin/panels/jobs/", {"admin", "ops"}),
    Access("/admin/panels/audit/", {"admin", "lead"}),
]


# The console sidebar each role must see once every section exists (adminsite/navigation.py
# decides; this is the independent statement of what it should decide).
SIDEBAR = {
    "admin": ["Dashboard", "Support", "Monitoring", "Audit", "Impersonation", "Shop", "Jobs"],
    "lead": ["Dashboard", "Support", "Audit", "Impersonation", "Shop"],
    "agent": ["Dashboard", "Support"],
    "ops": ["Dashboard", "Support", "Monitoring", "Jobs"],
}


def expected_sidebar(role: str) -> list[str]:
    """``SIDEBAR[role]`` less the sections not built yet: those whose page does not exist or
    whose permission no model defines yet."""
    from django.contrib.auth.models import Permission

    from adminsite.navigation import NAVIGATION, url_exists

    entries = {entry.label: entry for entry in NAVIGATION}
    shown = []
    for label in SIDEBAR[role]:
        entry = entries[label]
        if not url_exists(entry.url):
            continue
        if entry.permission:
            app_label, codename = entry.permission.split(".", 1)
            if not Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).exists():
                continue
        shown.append(label)
    return shown


def _section_page(request):
    return HttpResponse(f"page at {request.path}")


class URLConf:
    """A URL map with stand-in pages at ``paths``, for tests of behaviour that depends on which
    sections exist: ``settings.ROOT_URLCONF = URLConf("/admin/jobs/")``.

    By default the stand-ins come before the whole project map. ``bare=True`` leaves out every
    section other work has built: only sign-in, the API docs and the admin site remain, so
    exactly the stand-ins exist besides the dashboard.
    """

    def __init__(self, *paths: str, bare: bool = False):
        from django.contrib import admin
        from django.urls import include

        from adminsite.urls import urlpatterns

        stand_ins = [path(p.lstrip("/"), _section_page) for p in paths]
        if bare:
            docs = next(p for p in urlpatterns if getattr(p, "name", None) == "api-docs")
            base = [
                path("accounts/", include("adminsite.accounts_urls")),
                docs,
                path("admin/", admin.site.urls),
            ]
        else:
            base = list(urlpatterns)
        self.urlpatterns = stand_ins + base


def role_user(role: str):
    """The user playing ``role`` in this test (made on first use), or None for anonymous."""
    if role == "anonymous":
        return None
    if role not in ROLE_USERS:
        raise ValueError(f"Unknown role {role!r}; the roles are {', '.join(ROLE_USERS)}.")
    username = f"matrix-{role}"
    existing = get_user_model().objects.filter(username=username).first()
    if existing is not None:
        return existing
    if role == "customer":
        return CustomerFactory(username=username)
    return StaffFactory(username=username, role=STAFF_ROLE_NAMES[role])


@pytest.fixture
def role_users(db) -> dict:
    """Every role's user: ``role_users["ops"]``; ``role_users["anonymous"]`` is None."""
    return {role: role_user(role) for role in ROLE_USERS}


def _is_api(url: str) -> bool:
    return urlsplit(url).path.startswith("/api/")


def expected_outcome(
    role: str, *, url: str, allowed: Iterable[str], status: int, expect
) -> int | str | tuple:
    """What ``role`` must get: a status, a redirect path (str), or a tuple of acceptable ones."""
    if role in expect:
        return expect[role]
    if role in allowed:
        return status
    if _is_api(url):
        return 401 if role == "anonymous" else 403
    if role == "anonymous":
        return LOGIN_PATHS
    if role == "customer":
        return (*LOGIN_PATHS, 403)
    return 403


def _matches(response, outcome) -> bool:
    if isinstance(outcome, tuple):
        return any(_matches(response, one) for one in outcome)
    if isinstance(outcome, int):
        return response.status_code == outcome
    if response.status_code not in REDIRECTS:
        return False
    return urlsplit(response["Location"]).path.startswith(outcome)


def _describe(response) -> str:
    if response.status_code in REDIRECTS:
        return f"{response.status_code} -> {response['Location']}"
    return str(response.status_code)


def _describe_outcome(outcome) -> str:
    if isinstance(outcome, tuple):
        return " or ".join(_describe_outcome(one) for one in outcome)
    return str(outcome) if isinstance(outcome, int) else f"redirect to {outcome}"


def assert_access_matrix(
    client,
    url: str,
    allowed: Iterable[str],
    *,
    method: str = "get",
    status: int = 200,
    data: dict | None = None,
    expect: Mapping[str, int | str] | None = None,
    roles_to_check: Iterable[str] = ROLE_USERS,
) -> None:
    """Request ``url`` as every role and assert each gets its expected answer; one failure
    message lists every role that did not."""
    allowed = set(allowed)
    unknown = (allowed | set(expect or {})) - EVERYONE
    if unknown:
        raise ValueError(f"Unknown roles {sorted(unknown)}; the roles are {', '.join(ROLE_USERS)}.")
    failures = []
    for role in roles_to_check:
        client.logout()
        user = role_user(role)
        if user is not None:
            client.force_login(user)
        kwargs = {}
        if data is not None:
            if _is_api(url):
                kwargs = {"data": json.dumps(data), "content_type": "application/json"}
            else:
                kwargs = {"data": data}
        response = getattr(client, method.lower())(url, **kwargs)
        outcome = expected_outcome(
            role, url=url, allowed=allowed, status=status, expect=expect or {}
        )
        if not _matches(response, outcome):
            failures.append(
                f"  {role:<9} expected {_describe_outcome(outcome)}, got {_describe(response)}"
            )
    client.logout()
    assert not failures, f"{method.upper()} {url}:\n" + "\n".join(failures)
