"""The queue's rows and the ticket's thread are built in Python (tickets_ui.queue_rows and
comment_thread) for speed; they must give the markup the template loops they replaced gave.
Each test renders the original loop and the tag over the same tickets or comments, with
values that need escaping, and compares them (whitespace between tags aside)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.models import Permission
from django.http import QueryDict
from django.template import engines
from django.utils import timezone

from adminsite import roles
from adminsite.permissions import preload_permissions
from tests.factories import CustomerFactory, StaffFactory
from tickets import queries, services
from tickets.filters import parse_filters
from tickets.models import Comment, Priority, Ticket
from tickets.templatetags import tickets_ui

QUEUE_LOOP = """{% load console tickets_ui %}{% for ticket in tickets %}
{% with sla=ticket|sla_state %}
<tr data-ticket="{{ ticket.pk }}" class="priority-{{ ticket.priority }}">
  <td class="col-check">{% if can_work %}<input type="checkbox" name="ticket" value="{{ ticket.pk }}" aria-label="Select #{{ ticket.ticket_number }}">{% endif %}</td>
  <td class="col-num mono"><a class="num-link" href="{% url 'tickets:ticket' ticket.pk %}">#{{ ticket.ticket_number }}</a></td>
  <td class="col-subject">
    <a class="row-link" href="{% url 'tickets:ticket' ticket.pk %}" title="{{ ticket.subject }}">{{ ticket.subject }}</a>
    {% for tag in ticket.tags|slice:":3" %}<span class="tag">{{ tag }}</span>{% endfor %}
  </td>
  <td class="col-person"><span class="truncate" title="{{ ticket.requester.email }}">{{ ticket.requester|user_label }}</span></td>
  <td class="col-category muted">{{ ticket.category.name }}</td>
  <td>{% include "includes/badge.html" with kind="status" value=ticket.status label=ticket.get_status_display %}</td>
  <td>{% include "includes/badge.html" with kind="priority" value=ticket.priority label=ticket.get_priority_display %}</td>
  <td class="col-person">{% if ticket.assignee %}<span class="person"><span class="avatar avatar-xs" aria-hidden="true">{{ ticket.assignee|initials }}</span><span class="truncate">{{ ticket.assignee|user_label }}</span></span>{% else %}<span class="muted">Unassigned</span>{% if ticket.needs_assignment %}<span class="flag-chip" title="Automatic assignment found no available agent below their cap">no agent free</span>{% endif %}{% endif %}</td>
  <td class="col-sla" title="{{ sla.title }}">{% if sla.label %}<span class="sla sla-{{ sla.tone|default:'ok' }}"{% if sla.attrs %} {{ sla.attrs|safe }}{% endif %}>{% icon "clock" %}<span class="sla-text" data-sla-text>{{ sla.label }}</span></span>{% else %}<span class="muted">—</span>{% endif %}</td>
  <td class="col-updated muted nowrap" title="{{ ticket.updated_at|date:'j M Y H:i T' }}">{{ ticket.updated_at|ago }}</td>
</tr>
{% endwith %}
{% endfor %}"""

THREAD_LOOP = """{% load console tickets_ui %}{% for comment in comments %}
<li class="comment{% if comment.is_internal %} comment-internal{% elif comment.author.is_staff %} comment-staff{% else %} comment-customer{% endif %}{% if comment.pk == new_comment_id %} is-new{% endif %}"
    id="comment-{{ comment.pk }}" data-comment="{{ comment.pk }}" data-internal="{{ comment.is_internal|yesno:'true,false' }}"
    style="--depth: {{ comment.depth }}">
  <header class="comment-head">
    <span class="avatar{% if comment.author.is_staff %} avatar-staff{% endif %}" aria-hidden="true">{{ comment.author|initials }}</span>
    <span class="comment-author">{{ comment.author|user_label }}</span>
    {% if comment.author.is_staff %}<span class="role-chip">Staff</span>{% else %}<span class="role-chip role-customer">Customer</span>{% endif %}
    {% if comment.is_internal %}<span class="internal-label" data-testid="internal-label">{% icon "lock" %}Internal note · staff only</span>{% endif %}
    {% if comment.merged_from %}<span class="muted small">from #{{ comment.merged_from.ticket_number }}</span>{% endif %}
    <span class="comment-time" title="{{ comment.created_at|date:'j M Y H:i T' }}">{{ comment.created_at|ago }}</span>
    {% if can_comment %}<a class="comment-reply" href="{% url 'tickets:ticket' ticket.pk %}?reply_to={{ comment.pk }}#composer" data-reply-to="{{ comment.pk }}" data-reply-name="{{ comment.author|user_label }}">Reply</a>{% endif %}
  </header>
  <div class="comment-body">{{ comment.body|linebreaksbr }}</div>
</li>
{% empty %}
<li class="thread-empty muted">No replies yet.</li>
{% endfor %}"""


def _normal(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r">\s+<", "><", html)).strip()


def _render(source: str, **context) -> str:
    return engines["django"].from_string(source).render(context)


@pytest.fixture
def tricky_agent(db):
    return StaffFactory(role=roles.SUPPORT_AGENT, first_name="Zoë <b>", last_name="O'Neil & co")


def test_queue_rows_give_the_markup_of_the_template_loop(make_ticket, agent, tricky_agent):
    requester = CustomerFactory(first_name='Ann "Q"', last_name="<script>", email="a&b@x.test")
    make_ticket(
        subject='Sync <fails> & "loops"', requester=requester, tags=("a.b", "vip", "x", "y")
    )
    make_ticket(subject="Billing question", category="billing", assignee=tricky_agent)
    urgent = make_ticket(subject="Outage", priority=Priority.URGENT, assignee=agent)
    old = make_ticket(subject="Old one", status="pending", assignee=agent)
    now = timezone.now()
    # SLA states: breached, overdue, due soon, and an update too old for "ago" (a date).
    Ticket.objects.filter(pk=urgent.pk).update(
        first_response_due_at=now - dt.timedelta(hours=2), sla_breached=True
    )
    Ticket.objects.filter(pk=old.pk).update(
        resolution_due_at=now + dt.timedelta(minutes=30),
        updated_at=now - dt.timedelta(days=40),
    )
    # Routing found nobody for the billing ticket.
    Ticket.objects.filter(subject="Billing question").update(assignee=None, needs_assignment=True)
    filters = parse_filters(QueryDict(""), user=agent)
    tickets = queries.queue_page(user=agent, filters=filters).tickets
    assert len(tickets) == 4
    for can_work in (True, False):
        expected = _render(QUEUE_LOOP, tickets=tickets, can_work=can_work)
        got = _render(
            "{% load tickets_ui %}{% queue_rows tickets can_work %}",
            tickets=tickets,
            can_work=can_work,
        )
        assert _normal(got) == _normal(expected)
    assert "Sync &lt;fails&gt; &amp; &quot;loops&quot;" in got
    assert "<script>" not in got


# The sortable column header as the queue template included it before tickets_ui.sort_header.
SORT_HEADER_INCLUDE = """{% load tickets_ui %}{% if ordering == first %}{% if first == asc %}{% queue_query params ordering=desc page='' as query %}{% else %}{% queue_query params ordering=asc page='' as query %}{% endif %}{% else %}{% queue_query params ordering=first page='' as query %}{% endif %}<th class="sortable {{ css|default:'' }}"{% if ordering == asc %} aria-sort="ascending"{% elif ordering == desc %} aria-sort="descending"{% endif %}><a class="sort-link" href="{{ queue_url }}{{ query }}" hx-get="{{ queue_url }}{{ query }}">{{ label }}<span class="sort-mark" aria-hidden="true">{% if ordering == asc %}↑{% elif ordering == desc %}↓{% else %}↕{% endif %}</span></a></th>
"""


@pytest.mark.parametrize(
    ("label", "asc", "desc", "first", "css"),
    [
        ("#", "createdAt", "-createdAt", "-createdAt", "col-num"),
        ("Priority", "priority", "-priority", "-priority", ""),
        ("SLA", "nextDueAt", "-nextDueAt", "nextDueAt", ""),
        ("<b>&", "updatedAt", "-updatedAt", "-updatedAt", 'x"y'),
    ],
)
@pytest.mark.parametrize("ordering", ["-priority", "priority", "nextDueAt", "-nextDueAt", "x"])
def test_sort_header_gives_the_markup_of_the_include(label, asc, desc, first, css, ordering):
    context = {
        "params": {"status": "open", "search": 'a&b "c"', "page": "3", "ordering": ordering},
        "ordering": ordering,
        "queue_url": "/admin/support/",
    }
    expected = _render(
        SORT_HEADER_INCLUDE, label=label, asc=asc, desc=desc, first=first, css=css, **context
    )
    got = _render(
        "{% load tickets_ui %}{% sort_header label asc=asc desc=desc first=first css=css %}",
        label=label,
        asc=asc,
        desc=desc,
        first=first,
        css=css,
        **context,
    )
    assert got == expected


def test_comment_thread_gives_the_markup_of_the_template_loop(
    make_ticket, agent, tricky_agent, customer
):
    ticket = make_ticket(subject="Threaded", assignee=agent)
    first = services.add_comment(
        actor=agent, ticket=ticket, body="Line one\r\nLine <two> & 'three'"
    )
    services.add_comment(
        actor=tricky_agent, ticket=ticket, body="Note\nfor staff", is_internal=True
    )
    reply = services.add_comment(actor=customer, ticket=ticket, body="Thanks", parent=first)
    Comment.objects.filter(pk=first.pk).update(created_at=timezone.now() - dt.timedelta(days=400))
    comments = queries.comments_for(ticket, include_internal=True)
    assert [c.depth for c in comments] == [0, 1, 0]
    for can_comment, new_id in ((True, reply.pk), (False, None)):
        context = {
            "comments": comments,
            "ticket": ticket,
            "can_comment": can_comment,
            "new_comment_id": new_id,
        }
        expected = _render(THREAD_LOOP, **context)
        got = _render(
            "{% load tickets_ui %}{% comment_thread comments ticket=ticket can_comment=can_comment"
            " new_comment_id=new_comment_id %}",
            **context,
        )
        assert _normal(got) == _normal(expected)
    assert "Line one<br>Line &lt;two&gt; &amp; &#x27;three&#x27;" in got
    empty = _render(
        "{% load tickets_ui %}{% comment_thread comments ticket=ticket can_comment=True %}",
        comments=[],
        ticket=ticket,
    )
    assert _normal(empty) == _normal(_render(THREAD_LOOP, comments=[], ticket=ticket))


def test_pk_url_matches_reverse(make_ticket):
    ticket = make_ticket()
    for name in ("tickets:ticket", "tickets:status", "tickets:comment", "tickets:presence"):
        got = _render("{% load tickets_ui %}{{ pk|pk_url:name }}", pk=ticket.pk, name=name)
        expected = _render("{% url name pk %}", pk=ticket.pk, name=name)
        assert got == expected


def test_fixed_url_matches_the_url_tag(rf):
    request = rf.get("/admin/support/")
    for name in ("admin:index", "admin:logout", "tickets:queue", "api-docs"):
        got = _render("{% load console %}{% fixed_url name %}", name=name, request=request)
        assert got == _render("{% url name %}", name=name, request=request)


def test_list_api_page_loads_permissions_in_one_query(
    client, agent, make_ticket, token_for, django_assert_max_num_queries
):
    for number in range(3):
        make_ticket(subject=f"Ticket {number}")
    headers = token_for(agent)
    client.get("/api/admin/support/tickets", **headers)  # a token's first use stamps it
    # The token (with its user), the permissions (one query, not two), the count, the rows.
    with django_assert_max_num_queries(4):
        response = client.get("/api/admin/support/tickets", **headers)
    assert response.status_code == 200
    assert response.json()["count"] == 3


# The filter bar's selects as the queue template looped over them before tickets_ui.options.
OPTIONS_LOOP = """{% for value, label in choices %}<option value="{{ value }}"{% if value|stringformat:"s" == selected %} selected{% endif %}>{{ label }}</option>{% endfor %}"""


@pytest.mark.parametrize(
    "selected", ["", "open", "7", 7, 'a"b', "missing", None], ids=lambda value: repr(value)
)
def test_options_give_the_markup_of_the_template_loop(selected):
    choices = [
        ("", "Any"),
        ("open", "Open"),
        (7, "Zoë <b> O'Neil & co"),
        ('a"b', "Quote \" and 'apostrophe'"),
    ]
    got = _render(
        "{% load tickets_ui %}{% options choices selected %}", choices=choices, selected=selected
    )
    expected = _render(
        OPTIONS_LOOP,
        choices=choices,
        selected=None if selected is None else str(selected),
    )
    assert got == expected
    assert got.count(" selected") == (0 if selected in (None, "missing") else 1)
    assert "<b>" not in got


def test_options_without_a_selection_select_nothing():
    got = _render("{% load tickets_ui %}{% options choices %}", choices=[("", "Any"), ("a", "A")])
    assert got == '<option value="">Any</option><option value="a">A</option>'


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_time_texts_match_strftime(zone):
    """The loops format times with f-strings; they must read as strftime did."""
    moments = [
        dt.datetime(2026, month, day, hour, minute, 7, 123456, tzinfo=dt.UTC)
        for month, day, hour, minute in (
            (1, 1, 0, 5),
            (3, 29, 1, 30),
            (7, 4, 23, 59),
            (12, 31, 12, 0),
        )
    ]
    with timezone.override(zone):
        clock = tickets_ui._Clock()
        for moment in moments:
            local = timezone.localtime(moment)
            assert clock.stamp(moment)[0] == local.strftime("%-d %b %Y %H:%M %Z")
            assert clock.short(moment) == local.strftime("%-d %b %H:%M %Z")
            assert tickets_ui._stamp(moment) == local.strftime("%-d %b %H:%M %Z")
            old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + (moment - moments[0])
            expected = timezone.localtime(old).strftime("%-d %b %Y")
            assert tickets_ui.ago(old) == expected


def test_preload_permissions_gives_what_model_backend_loads(db, agent, django_assert_num_queries):
    extra = Permission.objects.get(codename="view_logentry", content_type__app_label="admin")
    agent.user_permissions.add(extra)  # one direct permission besides the role's group ones
    fresh = type(agent).objects.get(pk=agent.pk)
    with django_assert_num_queries(1):
        preload_permissions(fresh)
        preload_permissions(fresh)  # loaded once per user object
        assert fresh.has_perm("tickets.view_ticket")
        assert fresh.has_perm("admin.view_logentry")
        assert not fresh.has_perm("tickets.delete_category")
    expected = ModelBackend().get_all_permissions(type(agent).objects.get(pk=agent.pk))
    assert fresh._perm_cache == expected


def test_preload_permissions_leaves_superusers_and_inactive_users_alone(
    db, agent, agent2, django_assert_num_queries
):
    # Superusers hold every permission without the cache; inactive users hold none.
    agent.is_superuser = True
    agent2.is_active = False
    with django_assert_num_queries(0):
        preload_permissions(agent)
        preload_permissions(agent2)
        assert agent.has_perm("tickets.delete_category")
        assert not agent2.has_perm("tickets.view_ticket")
    assert not hasattr(agent, "_perm_cache") and not hasattr(agent2, "_perm_cache")


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
@pytest.mark.parametrize("precision", ["minutes", "seconds", "day"])
def test_when_gives_what_the_date_filter_gives(zone, precision):
    moments = [
        dt.datetime(2026, 1, 1, 0, 5, 9, tzinfo=dt.UTC),
        dt.datetime(2026, 3, 29, 1, 30, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2025, 12, 31, 23, 59, 0, tzinfo=dt.UTC),
    ]
    with timezone.override(zone):
        for moment in moments:
            expected = _render(
                "{{ moment|date:format }}", moment=moment, format=tickets_ui.WHEN_FORMATS[precision]
            )
            assert _render(
                "{% load tickets_ui %}{{ moment|when:p }}", moment=moment, p=precision
            ) == (expected)
    assert _render("{% load tickets_ui %}{{ moment|when }}", moment=None) == ""
