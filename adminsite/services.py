"""Writes owned by the console itself: API tokens."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from adminsite.models import ApiToken, hash_token


@transaction.atomic
def create_api_token(*, actor, user, name: str = "") -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the raw token (shown once, never stored)."""
    raw = ApiToken.generate()
    token = ApiToken.objects.create(user=user, name=name, prefix=raw[:12], token_hash=hash_token(raw))
    return token, raw


@transaction.atomic
def revoke_api_token(*, actor, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
