"""The home dashboard's panels. Each module adds a panel here as it lands (from its AppConfig's
``ready()``); a panel is shown only to users who hold its permission.

A panel is a template plus a context function. The dashboard renders each panel's template
with the context function's keys and ``panel`` (key, title, link); the page refreshes each
panel every 30 seconds from ``/admin/panels/<key>/``, which renders that one panel again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.template.loader import render_to_string

from adminsite import health
from adminsite.navigation import NAVIGATION, url_exists

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 30


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    permission: str | None  # None: every staff user
    template: str
    context: Callable[[object], dict]
    link: str  # the page this panel summarises; shown once that page exists
    icon: str = "layers"  # a symbol of static/adminsite/icons.svg


PANELS: list[Panel] = []


def register_panel(panel: Panel) -> None:
    PANELS[:] = [p for p in PANELS if p.key != panel.key] + [panel]


def get_panel(key: str) -> Panel | None:
    return next((p for p in PANELS if p.key == key), None)


def may_see(user, panel: Panel) -> bool:
    return not panel.permission or user.has_perm(panel.permission)


def may_open(user, url: str) -> bool:
    """The page exists, and if it is a console section, the user holds its permission."""
    if not url or not url_exists(url):
        return False
    section = next((entry for entry in NAVIGATION if entry.url == url), None)
    return section is None or not section.permission or user.has_perm(section.permission)


def render_panel(request, panel: Panel) -> dict:
    """The panel's metadata and its rendered body. A panel whose context fails is shown as an
    error inside its card, so one broken module never takes the whole dashboard down."""
    link = panel.link if may_open(request.user, panel.link) else ""
    meta = {"key": panel.key, "title": panel.title, "link": link, "icon": panel.icon}
    try:
        body = render_to_string(
            panel.template, {**panel.context(request), "panel": meta}, request=request
        )
        failed = False
    except Exception:
        logger.exception("dashboard panel failed", extra={"panel": panel.key})
        body, failed = "", True
    return {**meta, "body": body, "failed": failed, "refresh_seconds": REFRESH_SECONDS}


def panels_for(request) -> list[dict]:
    return [render_panel(request, panel) for panel in PANELS if may_see(request.user, panel)]


def quick_links(user, panels: list[dict]) -> list[dict]:
    """Sections the user may open that no panel summarises yet."""
    covered = {panel["link"] for panel in panels}
    return [
        {
            "label": entry.label,
            "url": entry.url,
            "icon": entry.icon,
            "description": entry.description,
        }
        for entry in NAVIGATION
        if entry.url != "/admin/" and entry.url not in covered and may_open(user, entry.url)
    ]


def dashboard_context(request) -> dict:
    panels = panels_for(request)
    return {"panels": panels, "quick_links": quick_links(request.user, panels)}


# --- the System panel ------------------------------------------------------------------------

CHECK_LABELS = {"database": "PostgreSQL", "redis": "Redis", "workers": "Celery workers"}


def _health(problem: str | None) -> str:
    if problem is None:
        return "healthy"
    # "unknown: …" means the check could not run because something it depends on is down.
    return "warning" if problem.startswith("unknown") else "critical"


def _workers_detail() -> str:
    try:
        beats = health.worker_heartbeats()
    except Exception:  # readiness() already judged the workers; this is detail only
        return "ready"
    if not beats:
        return "ready"
    age = max(0, int(time.time() - max(beats.values())))
    count = len(beats)
    return f"{count} worker{'s' if count != 1 else ''} · last heartbeat {age} s ago"


HEALTHY_DETAIL = {
    "database": lambda: "Accepting queries",
    "redis": lambda: "Answering PING",
    "workers": _workers_detail,
}


def system_context(request) -> dict:
    checks = []
    for name, problem in health.readiness().items():
        detail = problem if problem else HEALTHY_DETAIL.get(name, lambda: "ready")()
        checks.append(
            {
                "name": name,
                "label": CHECK_LABELS.get(name, name),
                "health": _health(problem),
                "detail": detail,
            }
        )
    levels = {check["health"] for check in checks}
    overall = (
        "critical" if "critical" in levels else "warning" if "warning" in levels else "healthy"
    )
    return {
        "checks": checks,
        "overall": overall,
        "problem_count": sum(1 for check in checks if check["health"] != "healthy"),
    }


register_panel(
    Panel(
        key="system",
        title="System",
        permission=None,
        template="adminsite/panels/system.html",
        context=system_context,
        link="/admin/jobs/",
        icon="server",
    )
)


# --- the Support panel -----------------------------------------------------------------------


def support_context(request) -> dict:
    from tickets.views import support_panel_context

    return support_panel_context(request)


register_panel(
    Panel(
        key="support",
        title="Support",
        permission="tickets.view_ticket",
        template="tickets/panels/support.html",
        context=support_context,
        link="/admin/support/",
        icon="inbox",
    )
)


# --- the Impersonation panel -----------------------------------------------------------------


def impersonation_context(request) -> dict:
    from impersonation.queries import panel_context

    return panel_context()


register_panel(
    Panel(
        key="impersonation",
        title="Impersonation",
        permission="impersonation.view_impersonationsession",
        template="impersonation/panels/active.html",
        context=impersonation_context,
        link="/admin/impersonation/",
        icon="user-switch",
    )
)


# --- the Monitoring panel --------------------------------------------------------------------


def monitoring_context(request) -> dict:
    from monitoring import queries

    firing = queries.firing_counts()
    checks = queries.health_checks(firing=firing)
    return {
        "checks": checks,
        "overall": queries.overall(checks),
        "problem_count": sum(1 for check in checks if check["health"] != "healthy"),
        # Firing alerts by severity and the few most urgent (alerting, monitoring/alerts.py).
        "firing": firing,
        "active_alerts": queries.active_alerts(limit=5),
    }


register_panel(
    Panel(
        key="monitoring",
        title="Monitoring",
        permission="monitoring.view_metric",
        template="monitoring/panels/monitoring.html",
        context=monitoring_context,
        link="/admin/monitoring/",
        icon="activity",
    )
)


# --- the Jobs panel --------------------------------------------------------------------------

JOBS_PANEL_ROWS = 5


def jobs_context(request) -> dict:
    from adminsite import jobs_queries

    overview = jobs_queries.job_overview()
    failing = jobs_queries.failing_jobs(overview)
    try:
        workers = jobs_queries.workers()
    except Exception:  # Redis down: the System panel says so; this one still lists the jobs
        workers = []
    return {
        "failing": failing[:JOBS_PANEL_ROWS],
        "failing_count": len(failing),
        "periodic_count": sum(1 for job in overview if job.periodic),
        "running_count": sum(len(job.running) for job in overview),
        "workers_alive": sum(1 for worker in workers if worker["alive"]),
        "queue_depth": jobs_queries.queue_depth(),
    }


register_panel(
    Panel(
        key="jobs",
        title="Background jobs",
        permission="adminsite.view_jobs",
        template="adminsite/panels/jobs.html",
        context=jobs_context,
        link="/admin/jobs/",
        icon="clock",
    )
)


# --- the Audit panel -------------------------------------------------------------------------

AUDIT_PANEL_ROWS = 6


def audit_context(request) -> dict:
    from audit import queries

    return {"entries": queries.entry_page(queries.Filters(), size=AUDIT_PANEL_ROWS).entries}


register_panel(
    Panel(
        key="audit",
        title="Latest audit entries",
        permission="audit.view_auditentry",
        template="adminsite/panels/audit.html",
        context=audit_context,
        link="/admin/audit/",
        icon="shield",
    )
)
