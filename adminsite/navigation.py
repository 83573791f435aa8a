"""The console sidebar: each entry is shown only to users holding its permission, and only
once its page exists (the URL resolves), since sections land one at a time."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import Resolver404, resolve


@dataclass(frozen=True)
class NavEntry:
    label: str
    url: str
    icon: str
    permission: str | None  # None: every staff user
    description: str = ""


NAVIGATION = [
    NavEntry("Dashboard", "/admin/", "home", None, "Overview of the console"),
    NavEntry("Support", "/admin/support/", "inbox", "tickets.view_ticket", "Ticket queue and SLAs"),
    NavEntry(
        "Monitoring",
        "/admin/monitoring/",
        "activity",
        "monitoring.view_metric",
        "Metrics and alerts",
    ),
    NavEntry("Audit", "/admin/audit/", "shield", "audit.view_auditentry", "Tamper-evident trail"),
    NavEntry(
        "Impersonation",
        "/admin/impersonation/",
        "user-switch",
        "impersonation.impersonate",
        "Sign in as a customer",
    ),
    NavEntry("Shop", "/admin/shop/", "cart", "shop.view_order", "Orders and catalogue"),
    NavEntry("Jobs", "/admin/jobs/", "clock", "adminsite.view_jobs", "Background jobs"),
]


@lru_cache(maxsize=64)
def url_exists(path: str) -> bool:
    """Whether ``path`` is served by a page of its own. Two model admin views match section
    paths without being those sections: the catch-all (every path under /admin/, so anonymous
    users are sent to the login page rather than shown a 404) and an app's model index
    (/admin/audit/ lists the audit app's models until the Audit page is included before the
    model admin).

    The URL configuration is fixed for the life of a process, so each answer is computed once
    (every console page asks for each sidebar entry); changing ROOT_URLCONF forgets them."""
    try:
        match = resolve(path)
    except Resolver404:
        return False
    if getattr(match.func, "__name__", "") == "catch_all_view":
        return False
    return not (match.namespace == "admin" and match.url_name == "app_list")


@receiver(setting_changed)
def _forget_urls(*, setting, **kwargs) -> None:
    if setting == "ROOT_URLCONF":
        url_exists.cache_clear()


def is_active(entry_url: str, path: str) -> bool:
    return path == entry_url if entry_url == "/admin/" else path.startswith(entry_url)


def navigation_for(user, path: str) -> list[dict]:
    entries = []
    for entry in NAVIGATION:
        if entry.permission and not user.has_perm(entry.permission):
            continue
        if not url_exists(entry.url):
            continue
        entries.append(
            {
                "label": entry.label,
                "url": entry.url,
                "icon": entry.icon,
                "description": entry.description,
                "active": is_active(entry.url, path),
            }
        )
    return entries
