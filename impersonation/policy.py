"""Who may impersonate whom, and what an impersonated session may not do.

The rules, checked when a session starts and again on every request it makes (so a staff
member who loses the permission, is deactivated, or whose customer became staff meanwhile is
cut off at their next click):

* the staff member is active staff holding ``impersonation.impersonate``;
* the target is an active customer (not staff), and never a superuser nor the staff member;
  a superuser may also impersonate staff;
* nobody starts an impersonation while impersonating (checked by the start itself).

While impersonating, whatever no support task needs is refused by path (so it holds for pages
that do not exist yet, such as the shop's checkout): console pages, credentials, paying,
deleting, API tokens, and starting another impersonation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from audit.services import display_name

IMPERSONATE = "impersonation.impersonate"
VIEW_SESSIONS = "impersonation.view_impersonationsession"
FORCE_END = "impersonation.force_end"

# The only console URL open while impersonating: the way out.
STOP_PATH = "/admin/impersonation/stop"


class ImpersonationRefusedError(Exception):
    """Starting (or going on with) an impersonation is not allowed; ``str()`` says why."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


def staff_refusal(staff) -> ImpersonationRefusedError | None:
    """Why ``staff`` may not impersonate anyone at all, or None."""
    if not (staff.is_authenticated and staff.is_active and staff.is_staff):
        return ImpersonationRefusedError(
            "Only active staff can impersonate customers.", code="not_staff"
        )
    if not staff.has_perm(IMPERSONATE):
        return ImpersonationRefusedError(
            f"Impersonating customers needs the {IMPERSONATE} permission, which your role "
            "does not include.",
            code="permission",
        )
    return None


def target_refusal(*, staff, target) -> ImpersonationRefusedError | None:
    """Why ``staff`` may not impersonate ``target``, or None (the staff rules aside)."""
    if target.pk == staff.pk:
        return ImpersonationRefusedError("You cannot impersonate yourself.", code="self")
    if target.is_superuser:
        return ImpersonationRefusedError(
            f"{display_name(target)} is a superuser; superusers cannot be impersonated.",
            code="superuser",
        )
    if not target.is_active:
        return ImpersonationRefusedError(
            f"{display_name(target)}'s account is inactive; inactive accounts cannot be impersonated.",
            code="inactive",
        )
    if target.is_staff and not staff.is_superuser:
        return ImpersonationRefusedError(
            f"{display_name(target)} is a staff member; only customers can be impersonated "
            "(a superuser may also impersonate staff).",
            code="staff",
        )
    return None


def check(*, staff, target) -> None:
    """Raise :class:`ImpersonationRefusedError` unless ``staff`` may impersonate ``target``."""
    refusal = staff_refusal(staff) or target_refusal(staff=staff, target=target)
    if refusal is not None:
        raise refusal


def hijack_permission_check(*, hijacker, hijacked) -> bool:
    """``HIJACK_PERMISSION_CHECK``: django-hijack's question, answered by our rules."""
    if hijacked is None:
        return False
    return (
        staff_refusal(hijacker) is None and target_refusal(staff=hijacker, target=hijacked) is None
    )


# --- blocked while impersonating ---------------------------------------------------------------


@dataclass(frozen=True)
class BlockRule:
    name: str
    pattern: re.Pattern
    message: str


def _rule(name: str, pattern: str, message: str) -> BlockRule:
    return BlockRule(name, re.compile(pattern, re.IGNORECASE), message)


_STOP_FIRST = "Stop impersonating to do it as yourself, or ask the customer to do it."

# First match wins: the specific messages come before the console-wide one.
BLOCK_RULES: tuple[BlockRule, ...] = (
    _rule(
        "impersonate",
        r"^/(admin/impersonation/start|hijack)(/|$)",
        "You are already acting as a customer: stop this impersonation before starting another.",
    ),
    _rule(
        "console",
        r"^/admin(/|$)",
        "Console pages are closed while you act as a customer. Stop impersonating to return "
        "to the console.",
    ),
    _rule(
        "password",
        r"(^|[/_-])(password|passwd)([-_/]|$)",
        f"Changing the customer's password is not allowed while impersonating. {_STOP_FIRST}",
    ),
    _rule(
        "email",
        r"^/(accounts|api)/(.*[/_-])?e-?mail([-_/]|$)",
        f"Changing the customer's email address is not allowed while impersonating. {_STOP_FIRST}",
    ),
    _rule(
        "two_factor",
        r"(^|[/_-])(2fa|mfa|otp|totp|two[-_]factor|webauthn|passkeys?|security[-_]keys?)([-_/]|$)",
        "Changing the customer's two-factor sign-in is not allowed while impersonating. "
        f"{_STOP_FIRST}",
    ),
    _rule(
        "checkout",
        r"^/shop/(checkout|pay)",
        "Paying or checking out on the customer's behalf is not allowed while impersonating. "
        "You can look at the cart; the customer completes the purchase.",
    ),
    _rule(
        "api_token",
        r"(^|[/_-])(api[-_]?)?tokens?([-_/]|$)",
        f"Creating or managing API tokens is not allowed while impersonating. {_STOP_FIRST}",
    ),
    _rule(
        "delete",
        r"(^|[/_-])(delete|destroy|erase)([-_/]|$)",
        f"Deleting the customer's data is not allowed while impersonating. {_STOP_FIRST}",
    ),
)
_DELETE_RULE = next(rule for rule in BLOCK_RULES if rule.name == "delete")


def blocked_action(method: str, path: str) -> BlockRule | None:
    """The rule refusing ``method path`` while impersonating, or None when it is allowed."""
    if path.rstrip("/") == STOP_PATH:
        return None
    for rule in BLOCK_RULES:
        if rule.pattern.search(path):
            return rule
    if method.upper() == "DELETE":
        return _DELETE_RULE
    return None
