from django.contrib.auth import views as auth_views
from django.urls import path

from adminsite import accounts

app_name = "accounts"

urlpatterns = [
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", accounts.home, name="home"),
]
