"""Sign-in for customers (and staff) at /accounts/, and the customer's landing page."""

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET

from adminsite.navigation import url_exists

# The customer's own sections; each is listed once its page exists.
CUSTOMER_LINKS = [
    {
        "label": "My tickets",
        "url": "/help/tickets/",
        "icon": "inbox",
        "description": "Questions you asked our support team and their answers.",
    },
    {
        "label": "Shop",
        "url": "/shop/",
        "icon": "cart",
        "description": "Plans and add-ons, your cart and your orders.",
    },
]


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
    links = [link for link in CUSTOMER_LINKS if url_exists(link["url"])]
    return TemplateResponse(request, "accounts/home.html", {"links": links})
