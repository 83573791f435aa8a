from django.http import JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from adminsite import health


@require_GET
@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request):
    checks = health.readiness()
    down = {name: problem for name, problem in checks.items() if problem}
    body = {
        "status": "ready" if not down else "unavailable",
        "checks": {name: (problem or "ok") for name, problem in checks.items()},
    }
    if down:
        body["down"] = sorted(down)
    return JsonResponse(body, status=503 if down else 200)


@require_GET
def home(request):
    """The site root sends staff to the console and everyone else to their own pages."""
    user = request.user
    if user.is_authenticated and user.is_staff:
        return redirect("admin:index")
    if user.is_authenticated:
        return redirect("accounts:home")
    return redirect("accounts:login")
