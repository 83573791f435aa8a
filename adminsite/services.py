"""Writes owned by the console itself: API tokens, staff users and customers."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import identify_hasher
from django.contrib.auth.models import Group
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from adminsite.models import ApiToken, hash_token
from adminsite.roles import UnknownRoleError, check_role, sync_roles
from audit.services import record


@transaction.atomic
def create_api_token(*, actor, user, name: str = "") -> tuple[ApiToken, str]:
    """Create a token for ``user``; returns the row and the raw token (shown once, never stored)."""
    raw = ApiToken.generate()
    token = ApiToken.objects.create(
        user=user, name=name, prefix=raw[:12], token_hash=hash_token(raw)
    )
    record(
        "api_token.created",
        target=token,
        data={"user_id": user.pk, "name": name, "prefix": token.prefix},
        actor=actor,
    )
    return token, raw


@transaction.atomic
def revoke_api_token(*, actor, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        record(
            "api_token.revoked",
            target=token,
            data={"user_id": token.user_id, "prefix": token.prefix},
            actor=actor,
        )
    return token


def _new_user(
    *,
    username: str,
    email: str,
    password: str | None,
    password_hash: str | None,
    first_name: str,
    last_name: str,
):
    if password is not None and password_hash is not None:
        raise ValidationError({"password": "Give a password or a password hash, not both."})
    user_model = get_user_model()
    if user_model.objects.filter(username__iexact=username).exists():
        raise ValidationError({"username": f"A user named {username!r} already exists."})
    user = user_model(
        username=username,
        email=user_model.objects.normalize_email(email),
        first_name=first_name,
        last_name=last_name,
    )
    if password_hash is not None:
        # An already hashed password (demo data: one slow hash for many accounts).
        try:
            identify_hasher(password_hash)
        except ValueError:
            message = "The password hash is not in a known format."
            raise ValidationError({"password": message}) from None
        user.password = password_hash
    elif password is None:
        user.set_unusable_password()
    else:
        # Names the rule a weak password breaks, e.g. "This password is too common."
        try:
            validate_password(password, user)
        except ValidationError as exc:
            raise ValidationError({"password": exc.messages}) from None
        user.set_password(password)
    return user


@transaction.atomic
def create_staff_user(
    *,
    actor,
    username: str,
    email: str,
    password: str | None,
    role: str,
    first_name: str = "",
    last_name: str = "",
    password_hash: str | None = None,
):
    """A console user: ``is_staff`` and a member of exactly one role group (adminsite/roles.py)."""
    try:
        check_role(role)
    except UnknownRoleError as exc:
        raise ValidationError({"role": str(exc)}) from None
    user = _new_user(
        username=username,
        email=email,
        password=password,
        password_hash=password_hash,
        first_name=first_name,
        last_name=last_name,
    )
    user.is_staff = True
    user.save()
    group = Group.objects.filter(name=role).first()
    if group is None:
        # A flushed database (tests) or a migrate run with signals inhibited: rebuild the groups.
        sync_roles()
        group = Group.objects.get(name=role)
    user.groups.add(group)
    record("user.staff_created", target=user, data={"role": role}, actor=actor)
    return user


@transaction.atomic
def create_customer(
    *,
    actor,
    username: str,
    email: str,
    password: str | None = None,
    first_name: str = "",
    last_name: str = "",
    password_hash: str | None = None,
):
    """A customer account (not staff). Without a password the account cannot sign in until
    a password is set through a reset. ``password_hash`` (from ``make_password``) replaces
    ``password`` where one hash serves many accounts, as in demo data."""
    user = _new_user(
        username=username,
        email=email,
        password=password,
        password_hash=password_hash,
        first_name=first_name,
        last_name=last_name,
    )
    user.save()
    record("user.customer_created", target=user, actor=actor)
    return user
