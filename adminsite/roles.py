"""Staff roles: the single source of truth for which Django permissions each role's group holds.

A role is a list of ``app_label.model.codename`` patterns (shell-style wildcards, matched with
:func:`fnmatch.fnmatchcase`). Patterns rather than a frozen list of codenames, so that the
permissions of models added later are picked up: ``sync_roles()`` runs from the ``0002_roles``
data migration and again after every ``migrate`` (a ``post_migrate`` handler connected in
:class:`adminsite.apps.AdminsiteConfig`), once the new models' permissions exist.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from adminsite.prepared import Statement

ADMIN = "Admin"
SUPPORT_LEAD = "Support Lead"
SUPPORT_AGENT = "Support Agent"
OPS = "Ops"

ROLES: dict[str, tuple[str, ...]] = {
    ADMIN: ("*.*.*",),
    SUPPORT_LEAD: (
        # Every ticket model, including the SLA policies, business calendars, teams, routing
        # and agents' caps and availability (tickets.agentprofile: the agents page and load).
        "tickets.*.*",
        "impersonation.*.impersonate",
        # A lead who may impersonate also reads the log of impersonation sessions.
        "impersonation.*.view_*",
        "audit.*.view_*",
        # Leads answer customers' questions about their orders: they read orders, their lines,
        # history and refunds, and the catalogue. Refunds (shop.refund_order), fulfilment,
        # catalogue sync and Stripe's raw events (payment payloads) stay with Admin.
        "shop.order.view_order",
        "shop.orderline.view_orderline",
        "shop.orderevent.view_orderevent",
        "shop.refund.view_refund",
        "shop.product.view_product",
        "shop.price.view_price",
    ),
    SUPPORT_AGENT: (
        # Work tickets: read, open and update tickets and their comments. No delete, and no
        # access to the ticket settings (SLA policies, assignment rules). Setting one's own
        # availability for automatic assignment comes with change_ticket (tickets.services).
        "tickets.ticket.view_ticket",
        "tickets.ticket.add_ticket",
        "tickets.ticket.change_ticket",
        "tickets.*comment.view_*",
        "tickets.*comment.add_*",
        "tickets.*comment.change_*",
        # Reading a ticket's timeline and the reference data an agent answers with is working
        # tickets, not settings; so is keeping one's own saved queue views.
        "tickets.ticketevent.view_ticketevent",
        "tickets.category.view_category",
        "tickets.cannedreply.view_cannedreply",
        "tickets.savedview.view_savedview",
        "tickets.savedview.add_savedview",
        "tickets.savedview.change_savedview",
    ),
    OPS: (
        "monitoring.*.*",
        "adminsite.*.view_jobs",
        "adminsite.*.run_jobs",
        "tickets.*.view_*",
    ),
}

# Shown in the console's top bar; also the order of the demo logins table.
ROLE_ORDER: tuple[str, ...] = (ADMIN, SUPPORT_LEAD, SUPPORT_AGENT, OPS)


class UnknownRoleError(ValueError):
    def __init__(self, role: str):
        super().__init__(f"Unknown role {role!r}; the roles are: {', '.join(ROLE_ORDER)}.")
        self.role = role


def check_role(role: str) -> str:
    if role not in ROLES:
        raise UnknownRoleError(role)
    return role


def permission_key(permission) -> str:
    """``app_label.model.codename`` of a Permission row (content type must be loaded)."""
    content_type = permission.content_type
    return f"{content_type.app_label}.{content_type.model}.{permission.codename}"


def matches(key: str, patterns: Iterable[str]) -> bool:
    return any(fnmatchcase(key, pattern) for pattern in patterns)


def permissions_for_role(role: str, permissions: Iterable) -> list:
    patterns = ROLES[check_role(role)]
    return [p for p in permissions if matches(permission_key(p), patterns)]


def sync_roles(*, apps=None, using: str = "default") -> dict[str, int]:
    """Create the role groups and set each group's permissions to exactly what its patterns
    match. Idempotent. ``apps`` is a migration state's app registry (from a data migration or
    the ``post_migrate`` signal); the global registry when omitted. Returns the permission
    count per role."""
    if apps is None:
        from django.apps import apps as global_apps

        apps = global_apps
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    permissions = list(permission_model.objects.using(using).select_related("content_type"))
    counts = {}
    for role in ROLE_ORDER:
        group, _ = group_model.objects.using(using).get_or_create(name=role)
        wanted = permissions_for_role(role, permissions)
        group.permissions.set(wanted)
        counts[role] = len(wanted)
    return counts


# A user's group names in a plain statement, prepared once per connection: the ORM's query
# over the many-to-many table cost more to build than to run, and planning the join more than
# running it, on every console page (the top bar shows the role).
_GROUP_NAMES = Statement(
    "console_group_names",
    """
    SELECT g.name FROM auth_group g JOIN auth_user_groups ug ON ug.group_id = g.id
     WHERE ug.user_id = %(user)s
""",
    [("user", "bigint")],
)


def role_of(user) -> str | None:
    """The user's staff role: the first of ROLE_ORDER among their groups, or None."""
    if not user.is_authenticated:
        return None
    names = {name for (name,) in _GROUP_NAMES.execute({"user": user.pk}).fetchall()}
    return next((role for role in ROLE_ORDER if role in names), None)
