"""The console sidebar: each entry is shown only to users holding its permission."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NavEntry:
    label: str
    url: str
    icon: str
    permission: str | None  # None: every staff user


NAVIGATION = [
    NavEntry("Dashboard", "/admin/", "home", None),
    NavEntry("Support", "/admin/support/", "inbox", "tickets.view_ticket"),
    NavEntry("Monitoring", "/admin/monitoring/", "activity", "monitoring.view_metric"),
    NavEntry("Audit", "/admin/audit/", "shield", "audit.view_auditentry"),
    NavEntry("Impersonation", "/admin/impersonation/", "user-switch", "impersonation.impersonate"),
    NavEntry("Shop", "/admin/shop/", "cart", "shop.view_order"),
    NavEntry("Jobs", "/admin/jobs/", "clock", "adminsite.view_jobs"),
]


def navigation_for(user, path: str) -> list[dict]:
    entries = []
    for entry in NAVIGATION:
        if entry.permission and not user.has_perm(entry.permission):
            continue
        active = path == entry.url if entry.url == "/admin/" else path.startswith(entry.url)
        entries.append({"label": entry.label, "url": entry.url, "icon": entry.icon, "active": active})
    return entries
