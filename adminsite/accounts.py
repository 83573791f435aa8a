"""Sign-in for customers (and staff) at /accounts/, and the customer's landing page."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET


class LoginView(auth_views.LoginView):
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def get_default_redirect_url(self):
        if self.request.user.is_staff:
            return "/admin/"
        return "/accounts/"


@require_GET
@login_required
def home(request):
    if request.user.is_staff:
        return redirect("admin:index")
    return TemplateResponse(request, "accounts/home.html", {})
