"""Every write of impersonation: starting and ending sessions, the pages they visit, the
customer's notice.

The session switch itself is django-hijack's: the same session key (``hijack_history``, the
pks of the staff members who switched, which also marks ``request.user.is_hijacked`` and tells
the audit context who the impersonator is), the same guard keeping ``last_login`` untouched,
the same backend lookup and session-age keeping, and its ``hijack_started``/``hijack_ended``
signals. What hijack leaves to the project is the policy and the record, which live here and
in :mod:`impersonation.policy`.

``django.contrib.auth.login`` flushes the session when the user changes, so the session key is
new on start and again on stop (no fixation from one identity to the other).

Audit events: ``impersonation.started`` and ``impersonation.ended`` (actor: whoever started or
ended it, ``system`` for the time limit and revocations), ``impersonation.action_blocked``
(written inside the impersonated request, so it names customer and impersonator) and
``impersonation.customer_notified``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model, login, logout
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.template.loader import render_to_string
from django.utils import timezone
from hijack import signals as hijack_signals
from hijack.views import get_used_backend, keep_session_age

from audit import context as audit_context_module
from audit.context import audit_context
from audit.services import record
from impersonation import policy
from impersonation.models import (
    MAX_PAGE_VIEWS,
    MAX_PATH_LENGTH,
    MAX_REASON_LENGTH,
    EndReason,
    ImpersonationPageView,
    ImpersonationSession,
)
from impersonation.policy import ImpersonationRefusedError

logger = logging.getLogger(__name__)

User = get_user_model()

# django-hijack's session key: the pks of the users who switched, innermost last.
HISTORY_KEY = "hijack_history"
# Ours: the ImpersonationSession this browser session is acting under.
SESSION_KEY = "impersonation_session"
# How many of the pages visited the ``impersonation.ended`` entry lists (all are in the table).
PAGES_IN_AUDIT = 100


def is_impersonating(request) -> bool:
    session = getattr(request, "session", None)
    return bool(session is not None and (session.get(HISTORY_KEY) or session.get(SESSION_KEY)))


def current_session_id(request) -> int | None:
    value = request.session.get(SESSION_KEY)
    return value if isinstance(value, int) else None


def clean_reason(reason: str) -> str:
    text = " ".join((reason or "").split())
    if not text:
        raise ValidationError(
            {"reason": "Give a reason for impersonating: it is recorded in the audit trail."}
        )
    if len(text) > MAX_REASON_LENGTH:
        raise ValidationError(
            {"reason": f"Keep the reason to {MAX_REASON_LENGTH} characters (it has {len(text)})."}
        )
    return text


# --- starting and stopping -------------------------------------------------------------------


def start_impersonation(
    *, request, actor, customer, reason: str, ticket=None
) -> ImpersonationSession:
    """``actor`` (the signed-in staff member) starts acting as ``customer`` in this browser
    session. Raises :class:`ImpersonationRefusedError` when the policy says no, ValidationError for
    bad input. On return the request is the customer's, and the session carries the record's id.
    """
    reason = clean_reason(reason)
    if ticket is not None and ticket.requester_id != customer.pk:
        raise ValidationError(
            {
                "ticket": f"Ticket {ticket} was opened by someone else; link one of this customer's tickets."
            }
        )
    if is_impersonating(request):
        raise ImpersonationRefusedError(
            "You are already acting as a customer: stop this impersonation before starting another.",
            code="nested",
        )
    with transaction.atomic():
        # The staff member's row is locked, as django-hijack does: two starts racing from two
        # tabs are serialised here, and the second one sees the first one's session.
        User._base_manager.select_for_update().filter(pk=actor.pk).first()
        policy.check(staff=actor, target=customer)
        now = timezone.now()
        running = ImpersonationSession.objects.active().filter(impersonator=actor).first()
        if running is not None and running.expires_at <= now:
            _end(running, reason=EndReason.EXPIRED, actor=audit_context_module.SYSTEM)
        elif running is not None:
            raise ImpersonationRefusedError(
                f"You are already impersonating {running.customer.get_username()} in another "
                f"browser (since {timezone.localtime(running.started_at):%H:%M}). Stop it there, or "
                f"end it from its page in the console (session #{running.pk}).",
                code="nested",
            )
        session = ImpersonationSession.objects.create(
            impersonator=actor,
            customer=customer,
            reason=reason,
            ticket=ticket,
            started_at=now,
            expires_at=now + timedelta(minutes=settings.IMPERSONATION_MAX_MINUTES),
            ip_address=audit_context_module.client_ip(
                request, trusted_proxies=settings.TRUSTED_PROXY_COUNT
            ),
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
        )
        with audit_context(actor=actor, impersonator=None):
            record(
                "impersonation.started",
                target=session,
                data={
                    "customer_id": customer.pk,
                    "customer": customer.get_username(),
                    "impersonator_id": actor.pk,
                    "reason": reason,
                    "ticket_id": ticket.pk if ticket is not None else None,
                    "expires_at": session.expires_at,
                },
            )
        # The switch. Its auth.login entry is the customer's, made by the staff member.
        with audit_context(actor=customer, impersonator=actor):
            _switch_user(request, customer)
        request.session[HISTORY_KEY] = [actor._meta.pk.value_to_string(actor)]
        request.session[SESSION_KEY] = session.pk
        if settings.IMPERSONATION_NOTIFY_CUSTOMER and customer.email:
            from impersonation import tasks

            # robust: a broker outage after the commit is logged, never an error for a start
            # that already happened.
            transaction.on_commit(partial(tasks.notify_customer.delay, session.pk), robust=True)
    hijack_signals.hijack_started.send(
        sender=None, request=request, hijacker=actor, hijacked=customer
    )
    return session


def stop_impersonation(*, request) -> ImpersonationSession | None:
    """The staff member presses Stop: the record ends (``stopped``) and the browser session
    is theirs again. Returns the record (None if it had gone missing)."""
    if not is_impersonating(request):
        raise ImpersonationRefusedError(
            "You are not impersonating anyone.", code="not_impersonating"
        )
    with transaction.atomic():
        session = _locked(current_session_id(request))
        staff = _staff_of(request)
        if session is not None and session.is_active and staff is not None:
            _end(session, reason=EndReason.STOPPED, actor=staff)
        release(request, staff=staff)
    return session


def end_for_request(
    *, request, session_id: int | None, reason: EndReason, detail: str = "", sign_out: bool = False
) -> None:
    """End the session (if it is still running) because of ``reason``, and give the browser
    session back: to the staff member, or to nobody if they may not sign in any more or
    ``sign_out`` says the state cannot be trusted."""
    with transaction.atomic():
        locked = _locked(session_id)
        if locked is not None and locked.is_active:
            _end(locked, reason=reason, actor=audit_context_module.SYSTEM, detail=detail)
        release(request, staff=None if sign_out else _staff_of(request))


def release(request, *, staff) -> None:
    """Back to the staff member's own account, or signed out when that is not possible (the
    staff member is gone or inactive)."""
    customer = request.user if getattr(request.user, "is_authenticated", False) else None
    if staff is not None and staff.is_active and customer is not None:
        with audit_context(actor=staff, impersonator=None):
            _switch_user(request, staff)
        hijack_signals.hijack_ended.send(
            sender=None, request=request, hijacker=staff, hijacked=customer
        )
    else:
        with audit_context(impersonator=_staff_of(request)):
            logout(request)
    # login() and logout() flushed the session; this is for the record.
    request.session.pop(HISTORY_KEY, None)
    request.session.pop(SESSION_KEY, None)


def end_session(*, actor, session: ImpersonationSession) -> ImpersonationSession:
    """End a running session from the console: its own staff member ends it (``stopped``), an
    admin holding ``impersonation.force_end`` forces it (``forced``). The browser that is
    impersonating finds out on its next request."""
    if session.impersonator_id == actor.pk:
        reason = EndReason.STOPPED
    elif actor.has_perm(policy.FORCE_END):
        reason = EndReason.FORCED
    else:
        raise PermissionDenied(
            f"Ending another staff member's impersonation needs the {policy.FORCE_END} permission."
        )
    with transaction.atomic():
        locked = _locked(session.pk)
        if locked is None or not locked.is_active:
            raise ValidationError("This impersonation has already ended.")
        _end(locked, reason=reason, actor=actor)
    return locked


def expire_overdue(*, now=None) -> dict[str, int]:
    """The beat sweep: end running sessions past their time limit (``expired``) and those
    whose staff member may no longer impersonate (``revoked``), so the record is right even
    when the browser never comes back. Returns how many of each."""
    now = now or timezone.now()
    counts = {"expired": 0, "revoked": 0}
    running = list(ImpersonationSession.objects.active().select_related("impersonator", "customer"))
    for session in running:
        if session.expires_at <= now:
            reason, detail = EndReason.EXPIRED, ""
        else:
            refusal = policy.staff_refusal(session.impersonator) or policy.target_refusal(
                staff=session.impersonator, target=session.customer
            )
            if refusal is None:
                continue
            reason, detail = EndReason.REVOKED, refusal.message
        with transaction.atomic():
            locked = _locked(session.pk)
            if locked is not None and locked.is_active:
                _end(
                    locked, reason=reason, actor=audit_context_module.SYSTEM, detail=detail, now=now
                )
                counts[reason] += 1
    return counts


def _end(session, *, reason: EndReason, actor, detail: str = "", now=None) -> None:
    """Close a locked, running session and record it. The time limit ends a session at its
    limit, even when it is noticed later."""
    now = now or timezone.now()
    session.ended_at = min(now, session.expires_at) if reason == EndReason.EXPIRED else now
    session.end_reason = reason
    session.ended_by = actor if isinstance(actor, User) else None
    session.save(update_fields=["ended_at", "end_reason", "ended_by"])
    pages = [
        f"{method} {path} {status}"
        for method, path, status in session.page_views.order_by("at", "id").values_list(
            "method", "path", "status_code"
        )[:PAGES_IN_AUDIT]
    ]
    data = {
        "reason": str(reason),
        "customer_id": session.customer_id,
        "impersonator_id": session.impersonator_id,
        "duration_seconds": int((session.ended_at - session.started_at).total_seconds()),
        "page_count": session.page_count,
        "pages": pages,
    }
    if detail:
        data["detail"] = detail
    with audit_context(impersonator=None):
        record("impersonation.ended", target=session, actor=actor, data=data)


def _locked(session_id: int | None) -> ImpersonationSession | None:
    if session_id is None:
        return None
    return (
        ImpersonationSession.objects.select_for_update(of=("self",))
        .select_related("customer", "impersonator")
        .filter(pk=session_id)
        .first()
    )


def _staff_of(request):
    history = request.session.get(HISTORY_KEY) or []
    if not history:
        return None
    return User._default_manager.filter(pk=history[-1]).first()


def _switch_user(request, user) -> None:
    """Sign ``user`` in to this browser session as django-hijack does: same backend, the
    session's expiry kept, and no ``last_login`` update."""
    backend = get_used_backend(request)
    backend_path = f"{backend.__module__}.{backend.__class__.__name__}"
    with hijack_signals.no_update_last_login(), keep_session_age(request.session):
        login(request, user, backend=backend_path)


# --- while impersonating ---------------------------------------------------------------------

_PAGE_VIEW_SQL = f"""
WITH counted AS (
    UPDATE {ImpersonationSession._meta.db_table} SET page_count = page_count + 1
    WHERE id = %s AND ended_at IS NULL
    RETURNING id, page_count
)
INSERT INTO {ImpersonationPageView._meta.db_table} (session_id, at, method, path, status_code, blocked)
SELECT id, %s, %s, %s, %s, %s FROM counted WHERE page_count <= %s
"""  # noqa: S608 - table names are our own constants


def record_page_view(
    *, session_id: int, method: str, path: str, status_code: int, blocked: bool = False
) -> None:
    """Count a request of a running session and keep it, up to MAX_PAGE_VIEWS per session.
    One statement: no read-modify-write, so concurrent requests count exactly."""
    with connection.cursor() as cursor:
        cursor.execute(
            _PAGE_VIEW_SQL,
            [session_id, timezone.now(), method[:10], path[:MAX_PATH_LENGTH], status_code, blocked,
             MAX_PAGE_VIEWS],
        )  # fmt: skip


def record_blocked_action(
    *, session: ImpersonationSession, rule: policy.BlockRule, method: str, path: str
) -> None:
    """An action refused while impersonating. Written inside the impersonated request, so the
    entry's actor is the customer and its impersonator the staff member."""
    with transaction.atomic():
        record(
            "impersonation.action_blocked",
            target=session,
            data={"rule": rule.name, "method": method, "path": path[:500]},
        )


# --- the customer's notice ---------------------------------------------------------------------


def notify_customer(*, session_id: int) -> bool:
    """Email the customer that support accessed their account, once per session (the row is
    locked while sending; a failed send rolls back and the task retries)."""
    with transaction.atomic():
        session = (
            ImpersonationSession.objects.select_for_update(of=("self",))
            .select_related("customer", "impersonator", "ticket")
            .filter(pk=session_id)
            .first()
        )
        if session is None or session.customer_notified_at is not None:
            return False
        customer = session.customer
        if not customer.email:
            return False
        context = {
            "session": session,
            "customer": customer,
            "staff_name": session.impersonator.first_name or "A member of our support team",
            "ticket_url": (
                settings.SITE_URL.rstrip("/") + f"/help/tickets/{session.ticket_id}/"
                if session.ticket_id
                else ""
            ),
        }
        subject = " ".join(
            render_to_string("impersonation/email/notify_subject.txt", context).split()
        )
        body = render_to_string("impersonation/email/notify_body.txt", context)
        session.customer_notified_at = timezone.now()
        session.save(update_fields=["customer_notified_at"])
        record(
            "impersonation.customer_notified",
            target=session,
            data={"customer_id": customer.pk},
        )
        EmailMessage(
            subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[customer.email]
        ).send(fail_silently=False)
    return True
