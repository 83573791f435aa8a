from rest_framework.permissions import BasePermission


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
            return super().has_permission(request, view) and request.user.has_perms(perms)

    _HasPerms.__name__ = "HasPerms_" + "_".join(p.replace(".", "_") for p in perms)
    return _HasPerms
