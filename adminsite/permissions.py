from django.conf import settings
from django.db import connection
from rest_framework.permissions import BasePermission

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"

# A user's permissions, directly and through their groups, as app_label and codename: what
# ModelBackend loads in two ORM queries, in one plain one. Compiling those two joins cost
# several times what running them did, on every console page and API request.
_USER_PERMISSIONS = """
    SELECT ct.app_label, p.codename
      FROM auth_permission p JOIN django_content_type ct ON ct.id = p.content_type_id
     WHERE p.id IN (
        SELECT up.permission_id FROM auth_user_user_permissions up WHERE up.user_id = %(user)s
        UNION
        SELECT gp.permission_id FROM auth_user_groups ug
          JOIN auth_group_permissions gp ON gp.group_id = ug.group_id
         WHERE ug.user_id = %(user)s)
"""


def preload_permissions(user) -> None:
    """Fill the permission cache ModelBackend keeps on the user object for the request
    (``_perm_cache``) in one query, so that permission checks and the templates' ``perms``
    read it instead of running the backend's two queries. Only where the backend would run
    them: an active user, not a superuser (who holds every permission without the cache),
    with ModelBackend the only backend, and nothing loaded yet."""
    if (
        not getattr(user, "is_authenticated", False)
        or hasattr(user, "_perm_cache")
        or not user.is_active
        or user.is_superuser
        or list(settings.AUTHENTICATION_BACKENDS) != [MODEL_BACKEND]
    ):
        return
    with connection.cursor() as cursor:
        cursor.execute(_USER_PERMISSIONS, {"user": user.pk})
        user._perm_cache = {f"{app}.{codename}" for app, codename in cursor.fetchall()}


class IsStaff(BasePermission):
    """The default for /api/admin/: an active staff user."""

    message = "Staff access is required."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


def has_model_perms(*perms: str) -> type[BasePermission]:
    """A permission class requiring staff plus every named Django permission."""

    class _HasPerms(IsStaff):
        message = "You do not have permission to perform this action."

        def has_permission(self, request, view):
            if not super().has_permission(request, view):
                return False
            preload_permissions(request.user)
            return request.user.has_perms(perms)

    _HasPerms.__name__ = "HasPerms_" + "_".join(p.replace(".", "_") for p in perms)
    return _HasPerms
