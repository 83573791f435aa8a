"""Demo data for ``python manage.py seed_demo``: a registry of seed steps that apps extend.

An app adds demo data by defining steps in its own ``<app>/seed.py`` (the command imports
that module of every installed app), for example::

    from adminsite.seed import SeedStep, register_step

    def add_arguments(parser):
        parser.add_argument("--tickets", type=int, default=200, help="How many demo tickets.")

    def seed_tickets(ctx):
        for i in ctx.progress(range(ctx.options["tickets"]), desc="Tickets"):
            ...  # create through services; ctx.created() / ctx.existing() for each row
        ...

    register_step(SeedStep("tickets", seed_tickets, order=200, arguments=add_arguments))

Every step must be idempotent: a second run finds its rows and counts them as existing. Steps
run in ``order`` (staff users 100, customers 110; later apps 200 and up), each in its own
transaction. A step may add rows to the demo logins table the command prints at the end.
"""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from tqdm import tqdm

from adminsite import roles, services


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    role: str
    lands_on: str
    sign_in_at: str


@dataclass
class SeedContext:
    options: dict[str, Any]
    logins: list[DemoLogin] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    show_progress: bool = True
    step: str = ""

    def progress(self, iterable: Iterable, *, desc: str, total: int | None = None):
        """``iterable`` with a tqdm progress bar on stderr (hidden with --no-progress)."""
        return tqdm(
            iterable,
            desc=f"{desc:<16}",
            total=total,
            unit="row",
            file=sys.stderr,
            disable=not self.show_progress,
            leave=True,
            dynamic_ncols=True,
        )

    def _count(self, key: str, n: int) -> None:
        step = self.counts.setdefault(self.step, {"created": 0, "existing": 0})
        step[key] += n

    def created(self, n: int = 1) -> None:
        self._count("created", n)

    def existing(self, n: int = 1) -> None:
        self._count("existing", n)

    def add_login(self, login: DemoLogin) -> None:
        self.logins.append(login)

    def add_note(self, note: str) -> None:
        """A line printed under the logins table."""
        self.notes.append(note)


@dataclass(frozen=True)
class SeedStep:
    name: str
    run: Callable[[SeedContext], None]
    order: int = 500
    arguments: Callable[[Any], None] | None = None  # adds the step's flags to the command
    help: str = ""


STEPS: list[SeedStep] = []


def register_step(step: SeedStep) -> SeedStep:
    STEPS[:] = [s for s in STEPS if s.name != step.name] + [step]
    return step


def steps() -> list[SeedStep]:
    return sorted(STEPS, key=lambda s: (s.order, s.name))


# --- the console's own steps: staff and customers -------------------------------------------

CONSOLE_LOGIN = "/admin/login/"
CUSTOMER_LOGIN = "/accounts/login/"

# Demo passwords only: published in the README and printed by the command. Never use demo data
# in production.
STAFF = [
    # username, password, role, first name, last name
    ("admin", "demo-admin-2026", roles.ADMIN, "Alex", "Morgan"),
    ("lead", "demo-lead-2026", roles.SUPPORT_LEAD, "Priya", "Shah"),
    ("agent", "demo-agent-2026", roles.SUPPORT_AGENT, "Sam", "Carter"),
    ("agent2", "demo-agent-2026", roles.SUPPORT_AGENT, "Lena", "Fischer"),
    ("ops", "demo-ops-2026", roles.OPS, "Jordan", "Lee"),
]
CUSTOMER_PASSWORD = "demo-customer-2026"  # noqa: S105 - published demo password
CUSTOMERS = [
    # first name, last name, company (email domain: <company>.example, reserved for examples)
    ("Maria", "Garcia", "brightpath"),
    ("James", "O'Connor", "northwind"),
    ("Aiko", "Tanaka", "kitsune-labs"),
    ("Oluwaseun", "Adeyemi", "lagosfresh"),
    ("Sophie", "Dubois", "atelier-lumen"),
    ("Liam", "Murphy", "greenleaf"),
    ("Chen", "Wei", "jadebridge"),
    ("Fatima", "Al-Sayed", "oasis-travel"),
    ("Lucas", "Silva", "riomarket"),
    ("Emma", "Johansson", "fjordtech"),
    ("Noah", "Schneider", "bergwerk"),
    ("Isabella", "Rossi", "trattoria-rossi"),
    ("Arjun", "Mehta", "saffronsoft"),
    ("Zoe", "Papadopoulos", "aegean-goods"),
    ("Mateo", "Fernández", "andes-coffee"),
    ("Hannah", "Kowalski", "vistula-print"),
    ("Kwame", "Mensah", "goldcoast-media"),
    ("Olivia", "Brown", "maplecraft"),
    ("Yusuf", "Demir", "bosphorus-tea"),
    ("Ingrid", "Nilsen", "aurora-outdoors"),
]


def _ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def customer_username(first: str, last: str) -> str:
    return f"{_ascii_slug(first)}.{_ascii_slug(last)}"


def seed_staff(ctx: SeedContext) -> None:
    user_model = get_user_model()
    hashes: dict[str, str] = {}  # hashing is deliberately slow: once per distinct password
    present = set(
        user_model.objects.filter(username__in=[row[0] for row in STAFF]).values_list(
            "username", flat=True
        )
    )
    for username, password, role, first, last in ctx.progress(STAFF, desc="Staff users"):
        if username in present:
            ctx.existing()
        else:
            if password not in hashes:
                hashes[password] = make_password(password)
            services.create_staff_user(
                actor=None,
                username=username,
                email=f"{username}@adminsite.example",
                password=None,
                password_hash=hashes[password],
                role=role,
                first_name=first,
                last_name=last,
            )
            ctx.created()
    for username, password, role, _first, _last in STAFF:
        if username == "agent2":
            continue  # same role and password as "agent": one row in the table is enough
        ctx.add_login(DemoLogin(username, password, role, "/admin/", CONSOLE_LOGIN))


def seed_customers(ctx: SeedContext) -> None:
    user_model = get_user_model()
    wanted = [
        (customer_username(first, last), first, last, company) for first, last, company in CUSTOMERS
    ]
    present = set(
        user_model.objects.filter(username__in=[row[0] for row in wanted]).values_list(
            "username", flat=True
        )
    )
    # One slow hash serves every customer, and none is made when they all exist already.
    customer_hash = make_password(CUSTOMER_PASSWORD) if len(present) < len(wanted) else ""
    for username, first, last, company in ctx.progress(wanted, desc="Customers"):
        if username in present:
            ctx.existing()
            continue
        services.create_customer(
            actor=None,
            username=username,
            email=f"{username}@{company}.example",
            password=None,
            password_hash=customer_hash,
            first_name=first,
            last_name=last,
        )
        ctx.created()
    first_customer = wanted[0][0]
    ctx.add_login(
        DemoLogin(first_customer, CUSTOMER_PASSWORD, "Customer", "/accounts/", CUSTOMER_LOGIN)
    )
    ctx.add_note(
        f"All {len(wanted)} customers ({', '.join(row[0] for row in wanted[:3])}, …) use the password "
        f"{CUSTOMER_PASSWORD}; agent2 is a second Support Agent with agent's password."
    )


register_step(SeedStep("staff", seed_staff, order=100, help="one staff user per role"))
register_step(SeedStep("customers", seed_customers, order=110, help=f"{len(CUSTOMERS)} customers"))
