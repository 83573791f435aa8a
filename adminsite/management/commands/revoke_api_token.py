"""``revoke_api_token PREFIX... | --user USERNAME [--yes]``: revoke API tokens.

A token is named by its prefix (the first 12 characters, as the ApiToken admin lists them), or
every active token of a user is revoked with ``--user``. Asks before revoking unless ``--yes``.
"""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from adminsite import services
from adminsite.models import ApiToken


class Command(BaseCommand):
    help = "Revoke API tokens by prefix, or all of a user's tokens with --user."

    def add_arguments(self, parser):
        parser.add_argument(
            "prefixes", nargs="*", metavar="PREFIX", help="Token prefix, e.g. ast_AbCdEfGh."
        )
        parser.add_argument(
            "--user", dest="username", help="Revoke every active token of this user."
        )
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args, prefixes: list[str], username: str | None, yes: bool, **options):
        if bool(prefixes) == bool(username):
            raise CommandError(
                "Name the tokens either by PREFIX or with --user USERNAME (one of the two)."
            )
        tokens = self._tokens_by_user(username) if username else self._tokens_by_prefix(prefixes)
        if not tokens:
            self.stdout.write("No active tokens to revoke.")
            return
        listing = ", ".join(f"{t.prefix}… ({t.user.get_username()})" for t in tokens)
        if not yes:
            if not sys.stdin.isatty():
                raise CommandError(
                    f"Would revoke {listing}; pass --yes to confirm without a terminal."
                )
            answer = input(f"Revoke {len(tokens)} token(s): {listing}? [y/N] ")
            if answer.strip().lower() not in {"y", "yes"}:
                raise CommandError("Nothing revoked.")
        for token in tokens:
            services.revoke_api_token(actor=None, token=token)
        self.stdout.write(f"Revoked {len(tokens)} token(s): {listing}")

    def _tokens_by_user(self, username: str) -> list[ApiToken]:
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None
        return list(
            user.api_tokens.filter(revoked_at__isnull=True).select_related("user").order_by("pk")
        )

    def _tokens_by_prefix(self, prefixes: list[str]) -> list[ApiToken]:
        tokens = []
        for prefix in dict.fromkeys(prefixes):
            matches = list(
                ApiToken.objects.filter(prefix=prefix).select_related("user").order_by("pk")
            )
            if not matches:
                raise CommandError(f"No token has the prefix {prefix!r}.")
            if len(matches) > 1:
                raise CommandError(
                    f"{len(matches)} tokens share the prefix {prefix!r}; revoke them with --user instead."
                )
            if matches[0].revoked_at is None:
                tokens.append(matches[0])
        return tokens
