"""Template helpers of the support pages: queue links that keep the filters, SLA due labels,
compact times, and the two long loops of the staff pages (the queue's rows and the ticket's
thread) rendered in Python.

Those two loops repeat a few dozen template nodes 50 or 200 times per page, which made the
template engine the bulk of the page's server time. ``queue_rows`` and ``comment_thread`` build
the same markup directly: one escape per value, URLs reversed once per page, icons and badges
from cached snippets. Their markup is documented next to each function; the pages' templates
call them where the loops were."""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from html import escape
from urllib.parse import urlencode

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone
from django.utils.html import format_html_join
from django.utils.safestring import SafeString, mark_safe

from adminsite.templatetags.console import code_label, icon_html, initials
from adminsite.users import user_label
from tickets.models import ACTIVE_STATUSES, Priority, Status

register = template.Library()

# An SLA deadline this close counts as "due soon" even before the SLA engine flags a warning.
DUE_SOON = dt.timedelta(hours=1)


@register.simple_tag
def queue_query(params: dict, **overrides) -> str:
    """``?status=open&page=2``: the queue's query with ``overrides`` applied; an empty
    override removes the key. Keys are sorted so equal filters give equal URLs."""
    merged = {**params}
    for key, value in overrides.items():
        if value in (None, ""):
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return "?" + urlencode(sorted(merged.items())) if merged else "?"


@register.simple_tag
def options(choices, selected=None) -> SafeString:
    """``{% options choices selected %}``: an ``<option>`` per ``(value, label)`` pair, in
    order, the one whose value equals ``selected`` (compared as text; None selects none)
    marked ``selected``. The markup a ``{% for %}`` loop over the pairs gave, without its
    handful of template nodes per option: the queue's filter bar has some forty options."""
    chosen = None if selected is None else str(selected)
    return format_html_join(
        "",
        '<option value="{}"{}>{}</option>',
        ((value, " selected" if str(value) == chosen else "", label) for value, label in choices),
    )


@register.simple_tag(takes_context=True)
def sort_header(context, label: str, *, asc: str, desc: str, first: str, css: str = ""):
    """A sortable column header of the queue: the first click sorts by ``first``, the next one
    flips the direction. Reads ``params``, ``ordering`` (current) and ``queue_url`` from the
    context. Python rather than an include: the table has four of them on every render."""
    ordering = context["ordering"]
    # Sorted by this column already: flip the direction; else sort by it, ``first`` way.
    target = (desc if first == asc else asc) if ordering == first else first
    url = escape(context["queue_url"] + queue_query(context["params"], ordering=target, page=""))
    if ordering == asc:
        sort, mark = ' aria-sort="ascending"', "↑"
    elif ordering == desc:
        sort, mark = ' aria-sort="descending"', "↓"
    else:
        sort, mark = "", "↕"
    return mark_safe(  # noqa: S308 - every value is escaped
        f'<th class="sortable {escape(css)}"{sort}><a class="sort-link" href="{url}" '
        f'hx-get="{url}">{escape(label)}<span class="sort-mark" aria-hidden="true">{mark}'
        "</span></a></th>\n"
    )


def compact_duration(delta: dt.timedelta) -> str:
    """``3d``, ``5h``, ``12m``, ``now``: the largest whole unit."""
    seconds = abs(int(delta.total_seconds()))
    if seconds >= 86400:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return "now"


@register.filter
def ago(moment) -> str:
    """``5m ago``, ``3h ago``, ``2d ago``; a date for anything older than a week."""
    if not moment:
        return ""
    now = timezone.now()
    return _ago(moment, now, timezone.localtime(now).year)


# strftime's %b in the C locale, which Python leaves LC_TIME in. The loops below format
# hundreds of times per page; strftime with %-d and %Z costs several times these f-strings.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _day_month(local: dt.datetime) -> str:
    """``strftime("%-d %b")``."""
    return f"{local.day} {_MONTHS[local.month - 1]}"


def _clock_time(local: dt.datetime) -> str:
    """``strftime("%H:%M %Z")``."""
    return f"{local.hour:02d}:{local.minute:02d} {local.tzname() or ''}"


def _full_time(local: dt.datetime) -> str:
    """``strftime("%-d %b %Y %H:%M %Z")``."""
    return f"{_day_month(local)} {local.year} {_clock_time(local)}"


def _short_time(local: dt.datetime) -> str:
    """``strftime("%-d %b %H:%M %Z")``: without the year (SLA deadlines)."""
    return f"{_day_month(local)} {_clock_time(local)}"


# The formats of Django's ``date`` filter that the ticket page shows, as f-strings: the filter
# costs a tenth of a millisecond a call, and the timeline uses it on every line.
WHEN_FORMATS = {"minutes": "j M Y H:i T", "seconds": "j M Y H:i:s T", "day": "j M Y"}


@register.filter
def when(moment, precision: str = "minutes") -> str:
    """``{{ moment|when }}``: ``{{ moment|date:"j M Y H:i T" }}`` in the current time zone;
    ``when:"seconds"`` adds the seconds, ``when:"day"`` gives the date alone (WHEN_FORMATS)."""
    if not moment:
        return ""
    local = timezone.localtime(moment)
    if precision == "day":
        return f"{_day_month(local)} {local.year}"
    if precision == "seconds":
        return (
            f"{_day_month(local)} {local.year} {local.hour:02d}:{local.minute:02d}"
            f":{local.second:02d} {local.tzname() or ''}"
        )
    return _full_time(local)


def _ago(moment, now, this_year: int, local=None) -> str:
    delta = now - moment
    if delta > dt.timedelta(days=7):
        local = local or timezone.localtime(moment)
        day = _day_month(local)
        return day if local.year == this_year else f"{day} {local.year}"
    text = compact_duration(delta)
    return "just now" if text == "now" else f"{text} ago"


class _Clock:
    """``now`` and the current time zone, read once per loop: ``stamp`` gives a moment's full
    time (the title) and its ``ago`` text with one time zone conversion; ``short`` the time
    without the year (SLA deadlines)."""

    def __init__(self) -> None:
        self.now = timezone.now()
        self.zone = timezone.get_current_timezone()
        self.year = self.now.astimezone(self.zone).year

    def stamp(self, moment) -> tuple[str, str]:
        """``strftime("%-d %b %Y %H:%M %Z")`` in the current time zone, and ``ago``."""
        local = moment.astimezone(self.zone)
        return _full_time(local), _ago(moment, self.now, self.year, local)

    def short(self, moment) -> str:
        """``_short_time`` in the current time zone."""
        return _short_time(moment.astimezone(self.zone))


register.filter("user_label", user_label)


@register.filter
def sla_state(ticket) -> dict:
    """What the SLA column shows: ``label``, ``tone`` (danger, warning or "") and ``title``.

    The SLA engine fills the due times and breach marks; until a ticket has a deadline the
    column shows a dash."""
    return _sla_state(ticket, _Clock())


def _sla_state(ticket, clock: _Clock) -> dict:
    """Also ``attrs``: the countdown's data attributes (static/tickets/sla.js ticks them every
    second) for an active ticket with a running clock, else ""."""
    title = []
    if ticket.first_response_due_at and not ticket.first_responded_at:
        title.append(f"First response due {clock.short(ticket.first_response_due_at)}")
    if ticket.resolution_due_at:
        title.append(f"Resolution due {clock.short(ticket.resolution_due_at)}")
    due = ticket.next_due_at
    active = ticket.status in ACTIVE_STATUSES
    paused = active and getattr(ticket, "sla_paused_at", None) is not None
    attrs = ""
    if due is not None and active:
        warn = (
            getattr(ticket, "first_response_warn_at", None)
            if ticket.first_responded_at is None and due == ticket.first_response_due_at
            else getattr(ticket, "resolution_warn_at", None)
        )
        attrs = countdown_attrs(due=due, warn=warn, paused=paused)
        if ticket.sla_breached:
            attrs += ' data-sla-breached="true"'
    if ticket.sla_breached:
        return {
            "label": "Breached",
            "tone": "danger",
            "title": "; ".join(title) or "SLA breached",
            "attrs": attrs,
        }
    if due is None or not active:
        return {"label": "", "tone": "", "title": "; ".join(title), "attrs": ""}
    if paused:
        return {"label": "Paused", "tone": "paused", "title": "; ".join(title), "attrs": attrs}
    left = due - clock.now
    if left.total_seconds() < 0:
        return {
            "label": f"{compact_duration(left)} over",
            "tone": "danger",
            "title": "; ".join(title),
            "attrs": attrs,
        }
    warned = ticket.sla_first_response_warning or ticket.sla_resolution_warning
    tone = "warning" if warned or left <= DUE_SOON else ""
    return {
        "label": f"in {compact_duration(left)}",
        "tone": tone,
        "title": "; ".join(title),
        "attrs": attrs,
    }


def _stamp(moment) -> str:
    """``_short_time`` in the current time zone."""
    return _short_time(timezone.localtime(moment))


@register.filter
def status_word(value) -> str:
    """``on_hold`` -> ``On hold`` for timeline lines (values stored as codes)."""
    text = str(value or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


# Django's ``escape`` is html.escape behind a lazy-string wrapper; these loops escape plain
# strings a thousand times per page, so they call html.escape itself (same output).

STATUS_LABELS = dict(Status.choices)
PRIORITY_LABELS = dict(Priority.choices)


@lru_cache(maxsize=256)
def badge_html(kind: str, value: str, label: str = "") -> SafeString:
    """The markup of includes/badge.html, for loops that cannot afford an include per row."""
    kind, shown = escape(kind), escape(value)
    return mark_safe(  # noqa: S308 - every value is escaped
        f'<span class="badge badge-{kind}-{shown}" data-{kind}="{shown}">'
        f"{escape(code_label(label or value))}</span>"
    )


@register.simple_tag
def badge(kind, value, label="") -> SafeString:
    """``{% badge "status" ticket.status ticket.get_status_display %}``: includes/badge.html
    from a cached snippet."""
    return badge_html(str(kind), str(value), str(label or ""))


def _linebreaksbr(text: str) -> str:
    """``{{ text|linebreaksbr }}`` (escaped, every line break a <br>) without the filter's
    lazy-string wrappers."""
    return escape(text.replace("\r\n", "\n").replace("\r", "\n")).replace("\n", "<br>")


@lru_cache(maxsize=64)
def _url_parts(name: str, prefix: str, urlconf) -> tuple[str, str] | None:
    """The text before and after the id in URL ``name`` (one ``<int:pk>``) under this script
    prefix and URL configuration, checked against a real reverse; None if it has no such
    simple shape."""
    head, _zero, tail = reverse(name, args=[0], urlconf=urlconf).rpartition("0")
    if reverse(name, args=[12345], urlconf=urlconf) != f"{head}12345{tail}":
        return None
    return head, tail


def _url_maker(name: str):
    """``pk -> URL`` for URL ``name`` with one ``<int:pk>``: reversing costs far more than
    joining strings, and these pages link to the same few URLs dozens of times."""
    urlconf = get_urlconf()
    parts = _url_parts(name, get_script_prefix(), urlconf)
    if parts is None:
        return lambda pk: reverse(name, args=[pk], urlconf=urlconf)
    head, tail = parts
    return lambda pk: f"{head}{pk}{tail}"


@receiver(setting_changed)
def _forget_urls(*, setting, **kwargs) -> None:
    if setting == "ROOT_URLCONF":
        _url_parts.cache_clear()


@register.filter
def pk_url(pk, name: str) -> str:
    """``{{ ticket.pk|pk_url:"tickets:status" }}``: what ``{% url "tickets:status" ticket.pk %}``
    gives, without a reverse per use."""
    return _url_maker(name)(int(pk))


@register.simple_tag
def queue_rows(tickets, can_work: bool) -> SafeString:
    """The queue table's rows, one per ticket:

    <tr data-ticket class="priority-…">: a selection checkbox (agents who may work tickets),
    #number and subject linking to the ticket with up to three tags, requester (email as
    title), category, status and priority badges, assignee with initials (or "Unassigned"),
    the SLA cell (see ``sla_state``) and the last update (``ago``, full time as title)."""
    ticket_url = _url_maker("tickets:ticket")
    clock_icon = icon_html("clock")
    clock = _Clock()
    people: dict[int, str] = {}
    rows = []
    for ticket in tickets:
        pk, number = ticket.pk, ticket.ticket_number
        status, priority = ticket.status, ticket.priority
        url = ticket_url(pk)
        subject = escape(ticket.subject)
        check = (
            f'<input type="checkbox" name="ticket" value="{pk}" aria-label="Select #{number}">'
            if can_work
            else ""
        )
        tags = "".join(f'<span class="tag">{escape(tag)}</span>' for tag in (ticket.tags or [])[:3])
        requester = ticket.requester
        assignee = ticket.assignee
        if assignee is None:
            person = (
                '<span class="muted">Unassigned</span>'
                '<span class="flag-chip" title="Automatic assignment found no available agent '
                'below their cap">no agent free</span>'
                if getattr(ticket, "needs_assignment", False)
                else '<span class="muted">Unassigned</span>'
            )
        elif (person := people.get(assignee.pk)) is None:  # a handful of agents, many rows
            person = people[assignee.pk] = (
                f'<span class="person"><span class="avatar avatar-xs" aria-hidden="true">'
                f"{escape(initials(assignee))}</span>"
                f'<span class="truncate">{escape(user_label(assignee))}</span></span>'
            )
        sla = _sla_state(ticket, clock)
        if sla["label"]:
            sla_cell = (
                f'<span class="sla sla-{escape(sla["tone"] or "ok")}"'
                f"{' ' + sla['attrs'] if sla['attrs'] else ''}>{clock_icon}"
                f'<span class="sla-text" data-sla-text>{escape(sla["label"])}</span></span>'
            )
        else:
            sla_cell = '<span class="muted">—</span>'
        updated_title, updated_ago = (
            clock.stamp(ticket.updated_at) if ticket.updated_at else ("", "")
        )
        rows.append(
            f'<tr data-ticket="{pk}" class="priority-{escape(priority)}">\n'
            f'<td class="col-check">{check}</td>\n'
            f'<td class="col-num mono"><a class="num-link" href="{url}">#{number}</a></td>\n'
            f'<td class="col-subject">\n'
            f'<a class="row-link" href="{url}" title="{subject}">{subject}</a>\n{tags}\n</td>\n'
            f'<td class="col-person"><span class="truncate" title="{escape(requester.email)}">'
            f"{escape(user_label(requester))}</span></td>\n"
            f'<td class="col-category muted">{escape(ticket.category.name)}</td>\n'
            f"<td>{badge_html('status', status, STATUS_LABELS.get(status, status))}</td>\n"
            f"<td>{badge_html('priority', priority, PRIORITY_LABELS.get(priority, priority))}</td>\n"
            f'<td class="col-person">{person}</td>\n'
            f'<td class="col-sla" title="{escape(sla["title"])}">{sla_cell}</td>\n'
            f'<td class="col-updated muted nowrap" title="{updated_title}">{updated_ago}</td>\n'
            "</tr>\n"
        )
    return mark_safe("".join(rows))  # noqa: S308 - every value is escaped above


@register.simple_tag
def comment_thread(comments, *, ticket, can_comment: bool, new_comment_id=None) -> SafeString:
    """The ticket page's thread: one <li class="comment …"> per comment (from
    ``queries.comments_for``, which sets ``depth``), classed comment-internal, comment-staff or
    comment-customer (is-new for the one just added), indented by ``--depth``. Its header: the
    author's initials and name, a Staff or Customer chip, the "Internal note · staff only"
    label on internal notes, "from #n" for comments moved by a merge, the time (``ago``, full
    time as title) and, for staff who may comment, a Reply link. Then the body, line breaks
    kept. Without comments: "No replies yet."."""
    if not comments:
        return mark_safe('<li class="thread-empty muted">No replies yet.</li>')
    reply_base = _url_maker("tickets:ticket")(ticket.pk)
    lock = icon_html("lock")
    clock = _Clock()
    heads: dict[int, tuple[str, str]] = {}  # author -> (avatar, name and chip): few authors
    items = []
    for comment in comments:
        pk, author, internal = comment.pk, comment.author, comment.is_internal
        staff = author.is_staff
        if internal:
            kind = " comment-internal"
        else:
            kind = " comment-staff" if staff else " comment-customer"
        if new_comment_id is not None and pk == new_comment_id:
            kind += " is-new"
        if (head := heads.get(author.pk)) is None:
            name = escape(user_label(author))
            chip = (
                '<span class="role-chip">Staff</span>'
                if staff
                else '<span class="role-chip role-customer">Customer</span>'
            )
            head = heads[author.pk] = (
                name,
                f'<span class="avatar{" avatar-staff" if staff else ""}" aria-hidden="true">'
                f"{escape(initials(author))}</span>\n"
                f'<span class="comment-author">{name}</span>\n{chip}\n',
            )
        name, author_html = head
        merged = comment.merged_from
        moved = f'<span class="muted small">from #{merged.ticket_number}</span>' if merged else ""
        reply = (
            f'<a class="comment-reply" href="{reply_base}?reply_to={pk}#composer" '
            f'data-reply-to="{pk}" data-reply-name="{name}">Reply</a>'
            if can_comment
            else ""
        )
        title, ago_text = clock.stamp(comment.created_at)
        items.append(
            f'<li class="comment{kind}" id="comment-{pk}" data-comment="{pk}" '
            f'data-internal="{"true" if internal else "false"}" '
            f'style="--depth: {comment.depth}">\n'
            f'<header class="comment-head">\n{author_html}'
            + (
                f'<span class="internal-label" data-testid="internal-label">{lock}'
                "Internal note · staff only</span>"
                if internal
                else ""
            )
            + f'{moved}\n<span class="comment-time" title="{title}">{ago_text}</span>\n'
            f"{reply}\n</header>\n"
            f'<div class="comment-body">{_linebreaksbr(comment.body)}</div>\n'
            "</li>\n"
        )
    return mark_safe("".join(items))  # noqa: S308 - every value is escaped above


# --- SLA: durations, countdowns and history --------------------------------------------------


@register.filter
def duration_words(seconds) -> str:
    """``5400`` → ``1h 30m``; ``200000`` → ``2d 7h``; under a minute → ``<1m``."""
    if seconds is None or seconds == "":
        return ""
    total = abs(int(float(seconds)))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m" if minutes else "<1m"


@register.filter
def get_item(mapping, key):
    """``{{ report|get_item:name }}``: a dict entry by a variable key."""
    return mapping.get(key) if hasattr(mapping, "get") else None


def _iso(moment) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if moment else ""


def countdown_attrs(*, due, warn, paused: bool, done: bool = False) -> str:
    """The data attributes static/tickets/sla.js reads to tick a countdown every second:
    due and warning moments (ISO, UTC) and whether the clock stands still."""
    state = "done" if done else ("paused" if paused else "running")
    return f'data-sla-due="{_iso(due)}" data-sla-warn="{_iso(warn)}" data-sla-state="{state}"'


@register.simple_tag
def sla_countdown(ticket, kind: str) -> SafeString:
    """A ticking countdown of one of the ticket's clocks (``first_response`` or
    ``resolution``) for the ticket page header; empty when that clock does not run."""
    if kind == "first_response":
        due, warn = ticket.first_response_due_at, ticket.first_response_warn_at
        breached, warned = ticket.sla_first_response_breached, ticket.sla_first_response_warning
        if not due or ticket.first_responded_at:
            return mark_safe("")
        label = "First response"
    else:
        due, warn = ticket.resolution_due_at, ticket.resolution_warn_at
        breached, warned = ticket.sla_resolution_breached, ticket.sla_resolution_warning
        if not due:
            return mark_safe("")
        label = "Resolution"
    if ticket.status not in ACTIVE_STATUSES:
        return mark_safe("")
    paused = ticket.sla_paused_at is not None
    now = timezone.now()
    left = due - now
    if paused:
        tone, text = "paused", "paused"
    elif breached or left.total_seconds() < 0:
        tone, text = "danger", f"{compact_duration(left)} over"
    elif warned or (warn and now >= warn):
        tone, text = "warning", f"{compact_duration(left)} left"
    else:
        tone, text = "ok", f"{compact_duration(left)} left"
    return mark_safe(  # noqa: S308 - every value is escaped or generated
        f'<span class="head-item sla sla-{tone}" data-testid="sla-{kind}" '
        f"{countdown_attrs(due=due, warn=warn, paused=paused)} "
        f'title="{escape(label)} due {escape(_stamp(due))}">{icon_html("clock")}'
        f'{escape(label)} <span class="sla-text" data-sla-text>{escape(text)}</span></span>'
    )


@register.filter
def mul60(minutes) -> int:
    """Minutes → seconds, for ``duration_words``."""
    return int(minutes or 0) * 60
