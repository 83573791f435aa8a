from django.utils.functional import SimpleLazyObject

from adminsite.navigation import navigation_for
from adminsite.prepared import Statement
from adminsite.roles import role_among

# The user's group names in a plain query, prepared once per connection: role_of's ORM query
# over the many-to-many table cost more to build than to run, and planning the join more than
# running it, on every console page.
_GROUP_NAMES = Statement(
    "console_group_names",
    """
    SELECT g.name FROM auth_group g JOIN auth_user_groups ug ON ug.group_id = g.id
     WHERE ug.user_id = %(user)s
""",
    [("user", "bigint")],
)


def _role_label(user) -> str:
    """``roles.role_of``, with the group names read in a plain query."""
    names = {name for (name,) in _GROUP_NAMES.execute({"user": user.pk}).fetchall()}
    role = role_among(names)
    return role or ("Superuser" if user.is_superuser else "Staff")


def console(request):
    # django-htmx's {% htmx_script %} reads the nonce as ``csp_nonce`` (django-csp 4 exposes it
    # as request.csp_nonce and, through its own processor, as CSP_NONCE).
    context = {"csp_nonce": getattr(request, "csp_nonce", None)}
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return context
    # Lazy: htmx partials and pages without the sidebar never pay for these queries.
    return {
        **context,
        "console_nav": SimpleLazyObject(lambda: navigation_for(user, request.path)),
        "console_role": SimpleLazyObject(lambda: _role_label(user)),
    }
