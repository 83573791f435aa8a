"""``create_api_token <username> [--name NAME]``: prints the new token, alone, on stdout.

The token is shown this once; only its SHA-256 is stored. Scripts can capture it with
``TOKEN=$(python manage.py create_api_token alice --name ci)``.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from adminsite import services
from adminsite.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token for a user and print it (alone) on stdout."

    def add_arguments(self, parser):
        parser.add_argument("username", help="The user the token authenticates as.")
        parser.add_argument(
            "--name", default="", help="A label to recognise the token by, e.g. 'ci'."
        )

    def handle(self, *args, username: str, name: str, **options):
        max_length = ApiToken._meta.get_field("name").max_length
        if len(name) > max_length:
            raise CommandError(f"--name must be at most {max_length} characters, got {len(name)}.")
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        if not user.is_active:
            raise CommandError(
                f"User {username!r} is inactive; an inactive user's token would be refused."
            )
        _token, raw = services.create_api_token(actor=None, user=user, name=name)
        self.stdout.write(raw)
