"""Automatic assignment: round robin and least open load over a category's available team
members below their cap; flagging when nobody is eligible; re-routing when an agent goes
away; manual assignment wins; parallel creates never pass a cap."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from adminsite import roles
from audit.models import AuditEntry
from tests.factories import CustomerFactory, StaffFactory
from tickets import services
from tickets.models import AgentProfile, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_agents(db):
    return [
        StaffFactory(role=roles.SUPPORT_AGENT, first_name=name, last_name="Agent")
        for name in ("Ada", "Ben", "Cleo")
    ]


@pytest.fixture
def routed(lead, categories, team_agents):
    """email_sync tickets are routed to the Sync team (round robin unless changed)."""

    def route(strategy="round_robin", members=None):
        team = services.create_team(
            actor=lead, name=f"Sync {strategy}", members=members or team_agents
        )
        services.set_category_routing(
            actor=lead, category=categories["email_sync"], team=team, strategy=strategy
        )
        categories["email_sync"].refresh_from_db()
        return team

    return route


def assignees(tickets) -> list[str]:
    ids = [t.pk for t in tickets]
    by_id = {
        t.pk: t.assignee.first_name if t.assignee else None
        for t in Ticket.objects.select_related("assignee").filter(pk__in=ids)
    }
    return [by_id[pk] for pk in ids]


def test_round_robin_takes_turns(make_ticket, routed):
    routed("round_robin")
    tickets = [make_ticket(subject=f"Sync {n}") for n in range(5)]
    assert assignees(tickets) == ["Ada", "Ben", "Cleo", "Ada", "Ben"]
    assert all(t.auto_assigned for t in Ticket.objects.filter(pk__in=[t.pk for t in tickets]))
    # Other categories are not routed.
    assert make_ticket(category="billing").assignee is None


def test_least_load_picks_the_agent_with_fewest_active_tickets(
    make_ticket, routed, team_agents, categories
):
    ada, ben, cleo = team_agents
    for _ in range(2):
        make_ticket(category="billing", assignee=ada)
    make_ticket(category="billing", assignee=cleo)
    routed("least_load")
    first, second, third = (make_ticket(subject=f"n{n}") for n in range(3))
    # Loads Ada 2, Ben 0, Cleo 1 → Ben. Ben and Cleo tie at 1: Cleo waited longer (never
    # routed). Then Ben has 1 against 2 and 2.
    assert assignees([first, second, third]) == ["Ben", "Cleo", "Ben"]


def test_agents_at_their_cap_or_away_are_skipped_and_nobody_left_flags(
    make_ticket, routed, team_agents, lead
):
    ada, ben, cleo = team_agents
    routed("round_robin")
    services.set_agent_cap(actor=lead, agent=ada, max_open_tickets=0)
    services.set_availability(actor=ben, agent=ben, available=False)
    tickets = [make_ticket(subject=f"c{n}") for n in range(2)]
    assert assignees(tickets) == ["Cleo", "Cleo"]
    services.set_agent_cap(actor=lead, agent=cleo, max_open_tickets=2)
    flagged = make_ticket(subject="Nobody free")
    assert flagged.assignee is None and flagged.needs_assignment
    assert AuditEntry.objects.filter(
        event="ticket.assignment_flagged", object_pk=str(flagged.pk)
    ).exists()
    # A person assigning it clears the flag.
    services.assign_ticket(actor=lead, ticket=flagged, assignee=ada)
    flagged.refresh_from_db()
    assert not flagged.needs_assignment and not flagged.auto_assigned


def test_going_away_reroutes_routed_tickets_but_manual_assignment_wins(
    make_ticket, routed, team_agents, lead
):
    ada, ben, cleo = team_agents
    routed("round_robin")
    routed_to_ada = make_ticket(subject="routed")  # Ada
    manual = make_ticket(category="billing", assignee=ada)
    created_for_ada = services.create_ticket(
        actor=lead,
        subject="Assigned by hand at creation",
        description="d",
        category=routed_to_ada.category,
        requester=routed_to_ada.requester,
        assignee=ada,
    )
    assert not created_for_ada.auto_assigned
    services.set_availability(actor=ada, agent=ada, available=False)
    assert assignees([routed_to_ada, manual, created_for_ada]) == ["Ben", "Ada", "Ada"]
    profile = AgentProfile.objects.get(user=ada)
    assert not profile.is_available
    # Nobody else available: the routed ticket is unassigned and flagged.
    services.set_availability(actor=ben, agent=ben, available=False)
    services.set_availability(actor=cleo, agent=cleo, available=False)
    routed_to_ada.refresh_from_db()
    assert routed_to_ada.assignee is None and routed_to_ada.needs_assignment


def test_availability_and_caps_need_the_right_role(team_agents, lead, ops):
    ada, ben, _cleo = team_agents
    with pytest.raises(PermissionDenied):
        services.set_availability(actor=ben, agent=ada, available=False)
    with pytest.raises(PermissionDenied):
        services.set_agent_cap(actor=ada, agent=ada, max_open_tickets=100)
    with pytest.raises(ValidationError, match="does not work tickets"):
        services.set_availability(actor=lead, agent=ops, available=True)
    with pytest.raises(ValidationError, match="from 0 to 10000"):
        services.set_agent_cap(actor=lead, agent=ada, max_open_tickets=-1)
    services.set_availability(actor=lead, agent=ada, available=False)
    assert AuditEntry.objects.filter(event="agent.availability_changed").count() == 1


def test_routing_needs_a_team_and_a_known_strategy(lead, categories):
    with pytest.raises(ValidationError, match="needs a team"):
        services.set_category_routing(
            actor=lead, category=categories["bug"], team=None, strategy="least_load"
        )
    with pytest.raises(ValidationError, match="Unknown strategy"):
        services.set_category_routing(
            actor=lead, category=categories["bug"], team=None, strategy="random"
        )


@pytest.mark.django_db(transaction=True)
def test_parallel_creates_never_push_an_agent_past_the_cap(categories, monkeypatch):
    from adminsite.celery import app

    # The creations' emails are sent in this process, after each commit: queued, a session
    # worker could still be sending them, with rows locked, while the database is flushed
    # after the test (a deadlock at teardown).
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    lead = StaffFactory(role=roles.SUPPORT_LEAD)
    agents = [StaffFactory(role=roles.SUPPORT_AGENT) for _ in range(2)]
    team = services.create_team(actor=lead, name="Race team", members=agents)
    category = categories["email_sync"]
    services.set_category_routing(actor=lead, category=category, team=team, strategy="least_load")
    for agent in agents:
        services.set_agent_cap(actor=lead, agent=agent, max_open_tickets=3)
    category.refresh_from_db()
    customers = [CustomerFactory() for _ in range(10)]
    barrier = threading.Barrier(len(customers))
    errors: list[Exception] = []

    def create(customer):
        try:
            barrier.wait(10)
            services.create_ticket(
                actor=customer,
                subject="At once",
                description="Many tickets arrive in the same instant.",
                category=category,
                requester=customer,
            )
        except Exception as exc:  # reported below  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=create, args=(c,)) for c in customers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    tickets = list(Ticket.objects.filter(category=category))
    assert len(tickets) == 10
    loads = {agent.pk: sum(t.assignee_id == agent.pk for t in tickets) for agent in agents}
    assert loads == {agents[0].pk: 3, agents[1].pk: 3}
    unassigned = [t for t in tickets if t.assignee_id is None]
    assert len(unassigned) == 4 and all(t.needs_assignment for t in unassigned)
