from django.contrib.admin.apps import AdminConfig


class ConsoleAdminConfig(AdminConfig):
    """django.contrib.admin, with the staff console's AdminSite as the default site."""

    default_site = "adminsite.sites.ConsoleAdminSite"
