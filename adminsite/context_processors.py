from adminsite.navigation import navigation_for


def console(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not user.is_staff:
        return {}
    return {"console_nav": navigation_for(user, request.path)}
