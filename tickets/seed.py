"""Demo and benchmark tickets for ``python manage.py seed_demo``.

    seed_demo                      # 300 tickets with their comments and timelines (once)
    seed_demo --tickets 1000000    # the benchmark set: 1M tickets, ~5M comments, in minutes

``--tickets N`` makes sure at least N tickets exist, adding only the difference, so it is
idempotent and tops up an existing demo. Rows are generated inside PostgreSQL with
``generate_series`` (no Python loop, no save per row): a realistic spread over time —
older tickets are mostly closed, recent ones still being worked — across categories,
priorities, channels, agents and customers, with threaded public replies, internal notes and
customer answers, timelines, SLA due times from the default targets, and search vectors
computed in the same statements. Large loads drop the secondary indexes and rebuild them at
the end, which is several times faster than maintaining them row by row.
"""

from __future__ import annotations

import json
import math
import time

from django.db import connection, transaction
from django.utils import timezone

from adminsite.seed import SeedContext, SeedStep, register_step
from tickets import queries, services
from tickets.search import SEARCH_CONFIG

DEMO_TICKETS = 300
# Above this many new tickets, dropping and rebuilding indexes beats maintaining them.
REBUILD_INDEXES_FROM = 50_000
# One customer per this many tickets when many tickets are asked for (25,000 for 1M).
TICKETS_PER_CUSTOMER = 40
# Every this-many-th generated ticket is a long conversation (200 comments): the ticket page
# benchmark opens one.
LONG_THREAD_EVERY = 100_000
LONG_THREAD_COMMENTS = 200
TICKETS_PER_DAY = 900

PROVIDERS = ["Gmail", "Outlook", "Yahoo", "iCloud", "Fastmail", "Exchange", "Zoho", "GMX"]

# slug → (share of tickets, 10 subjects, 8 description sentences). "{provider}", "{code}"
# and "{invoice}" are filled in per ticket.
CATEGORY_TEXT: dict[str, tuple[float, list[str], list[str]]] = {
    "email_sync": (
        0.30,
        [
            "Email sync not working for {provider} account",
            "{provider} mailbox stopped syncing",
            "New messages from {provider} not showing up",
            "Sync stuck at connecting for {provider}",
            "Duplicate emails after {provider} sync",
            "Sent folder not syncing with {provider}",
            "IMAP connection keeps dropping",
            "OAuth error when reconnecting {provider}",
            "Emails arriving hours late",
            "Sync error {code} on shared mailbox",
        ],
        [
            "User reports emails not syncing for their {provider} account since this morning.",
            "The sync status shows error {code} and retrying does not help.",
            "We removed and re-added the account but the inbox is still empty.",
            "Only messages older than two days are visible, nothing new arrives.",
            "The desktop client shows the messages, the web app does not.",
            "It started right after we changed the mailbox password.",
            "Several people on our team with {provider} accounts see the same thing.",
            "The folder list loads but opening any folder spins forever.",
        ],
    ),
    "billing": (
        0.15,
        [
            "Charged twice this month",
            "Invoice {invoice} shows the wrong VAT number",
            "Refund for unused seats",
            "Card declined when upgrading plan",
            "Switching to annual billing",
            "Invoice address needs updating",
            "Unexpected charge on my card",
            "Downgrade to the Starter plan",
            "Payment failed but service still active",
            "Copy of invoice {invoice} needed",
        ],
        [
            "Our card statement shows two identical charges for this month's subscription.",
            "Invoice {invoice} lists our old company address and VAT number.",
            "We reduced the team from twelve to eight seats and would like a prorated refund.",
            "The upgrade page says the card was declined, but the bank sees no attempt.",
            "Our finance team needs invoices addressed to the parent company from now on.",
            "We would like to move to yearly billing if there is a discount.",
            "The payment reminder email says the last payment failed.",
            "Please confirm the plan change takes effect at the end of the billing period.",
        ],
    ),
    "account": (
        0.20,
        [
            "Cannot log in after password reset",
            "Two-factor codes not accepted",
            "Transfer account ownership",
            "Add a new user to our team",
            "SSO login redirects in a loop",
            "Locked out after too many attempts",
            "Change the email address on my account",
            "Remove a former employee's account",
            "Verification email never arrives",
            "Session expires every few minutes",
        ],
        [
            "After resetting the password the login page says the credentials are invalid.",
            "The authenticator app codes are rejected even though the phone clock is correct.",
            "Our office manager is leaving and ownership should move to the new admin.",
            "The SSO sign-in bounces between the identity provider and the login page.",
            "The account is locked and the unlock link in the email has expired.",
            "The verification email is not in spam either; we allow-listed the sender.",
            "We get signed out every few minutes, in every browser we tried.",
            "A colleague left the company and their mailbox should be handed over.",
        ],
    ),
    "bug": (
        0.20,
        [
            "Attachments over 10 MB fail to upload",
            "Search finds nothing for known emails",
            "Error {code} when opening a conversation",
            "Calendar invites show the wrong time zone",
            "Signature images are broken",
            "Mobile app crashes when opening inbox",
            "Drafts disappear after saving",
            "Rules do not move messages to folders",
            "Unread count is wrong",
            "Links unreadable in dark mode",
        ],
        [
            "Uploading a 14 MB PDF stops at 99% and then shows error {code}.",
            "Searching for the sender's address returns no results although the email is in the inbox.",
            "Opening one particular conversation shows a blank page with error {code}.",
            "Meeting invites from partners in other countries show up one hour off.",
            "The logo in our signature shows as a broken image for recipients.",
            "The iOS app closes immediately after tapping the inbox.",
            "Drafts saved on the web app are gone when we open them on the phone.",
            "A filter rule that used to move invoices to a folder stopped working last week.",
        ],
    ),
    "feature_request": (
        0.10,
        [
            "Snooze for emails",
            "Shared labels for the team",
            "Multiple signatures per mailbox",
            "Schedule sending for later",
            "Export a mailbox as MBOX",
            "Keyboard shortcut for archiving",
            "Slack notifications for important mail",
            "Longer undo-send delay",
            "Custom domains for aliases",
            "API access to folders",
        ],
        [
            "It would help us a lot to snooze emails until a given date.",
            "Our support team wants labels that everyone in the workspace shares.",
            "We send from one mailbox in two languages and need a signature for each.",
            "Being able to schedule an email for the next morning is the one thing we miss.",
            "For our archive we need to export old mailboxes in a standard format.",
            "Power users on our team would love more keyboard shortcuts.",
            "A notification in Slack when a VIP customer writes would be great.",
            "Ten seconds of undo send is too short for us; thirty would be ideal.",
        ],
    ),
    "other": (
        0.05,
        [
            "Question about data retention",
            "Where are your servers located",
            "Data processing agreement",
            "Partnership inquiry",
            "Feedback on the new design",
            "Nonprofit discount",
            "Security questionnaire",
            "Accessibility of the web app",
            "Cancelling my trial",
            "Press inquiry",
        ],
        [
            "Our compliance team asks how long deleted emails are kept.",
            "We need to know in which countries the data is stored.",
            "Please send the data processing agreement for signature.",
            "We are a small agency and would like to resell your product.",
            "The new design looks great but the font is a bit small.",
            "We are a registered charity; do you offer a discount?",
            "Attached is our vendor security questionnaire, due at the end of the month.",
            "One of our team members uses a screen reader and has trouble with the compose window.",
        ],
    ),
}
CLOSERS = [
    "Thanks for your help!",
    "This is blocking our team, please advise.",
    "Let me know if you need more details.",
    "We are on the Business plan.",
    "Happy to jump on a call if that helps.",
    "Our account ID is in the signature below.",
]
STAFF_REPLIES = [
    "Thanks for reaching out. Could you tell us which browser and version you are using?",
    "I've investigated the issue. The access token for the {provider} account needs a refresh: please reconnect the mailbox under Settings > Accounts.",
    "We have found the cause and deployed a fix. Could you check whether it works for you now?",
    "I've issued a refund; it will show on your statement within five to ten business days.",
    "Could you send us a screenshot of the error message ({code}) you see?",
    "I've updated the invoice details; the corrected invoice is attached to your account.",
    "Our engineering team is looking into this. I'll update you as soon as I hear back.",
    "The sync has caught up on our side. New messages should appear within a few minutes.",
    "I've added your vote to this feature request and passed your use case to the product team.",
    "Please clear the browser cache and sign in again; that resets the session.",
    "I've reset the two-factor setup on your account; you can enroll your phone again.",
    "Ownership has been transferred. The new owner received a confirmation email.",
]
INTERNAL_NOTES = [
    "Token needs refresh. Logs show invalid_grant from {provider} since the password change.",
    "Checked the billing system: the second charge is a pending authorization, not a capture.",
    "Reproduced on staging with a 14 MB file; filed bug {code} with engineering.",
    "Customer is on the Business plan, VIP account: keep priority high.",
    "Escalated to tier 2, waiting for engineering to confirm the root cause.",
    "Known issue with the {provider} API rate limits this week; see incident {code}.",
    "Verified identity via the billing email before changing the account owner.",
    "Duplicate of an older ticket from the same customer; consider merging.",
    "Refund approved by the lead; processed in Stripe.",
    "Asked the customer for a HAR file; sync worker logs attached to the incident.",
]
CUSTOMER_REPLIES = [
    "Thanks, that fixed it!",
    "I tried that but it still doesn't work. The error {code} is back.",
    "Here is the screenshot you asked for.",
    "We are using the latest Chrome on Windows 11.",
    "Any update on this? It is affecting our whole team.",
    "Reconnecting the {provider} account worked, thank you.",
    "The refund has arrived, thanks a lot.",
    "It works on the desktop but not on my phone.",
    "Sorry for the late reply, I was travelling. Yes, please go ahead.",
    "Could you also check the second mailbox on our account?",
]
TAGS = [
    "gmail",
    "outlook",
    "imap",
    "oauth",
    "invoice",
    "refund",
    "vip",
    "mobile",
    "ios",
    "android",
    "api",
    "sso",
    "2fa",
    "migration",
    "enterprise",
    "trial",
]
FIRST_NAMES = [
    "Anna",
    "Ben",
    "Carla",
    "David",
    "Elena",
    "Felix",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Leo",
    "Mila",
    "Nils",
    "Olga",
    "Paul",
    "Rosa",
    "Simon",
    "Tara",
    "Umar",
    "Vera",
    "Wim",
    "Xenia",
    "Yann",
    "Zara",
    "Amir",
    "Bea",
    "Chidi",
    "Dana",
    "Eli",
]
LAST_NAMES = [
    "Andersen",
    "Baker",
    "Costa",
    "Dijkstra",
    "Evans",
    "Fontaine",
    "Gupta",
    "Hansen",
    "Ivanova",
    "Jensen",
    "Kim",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quinn",
    "Rahman",
    "Santos",
    "Takahashi",
    "Ueda",
    "Varga",
    "Weber",
    "Yilmaz",
    "Zhou",
]
COMPANIES = [
    "acme",
    "globex",
    "initech",
    "umbrella",
    "stark",
    "wayne",
    "hooli",
    "vandelay",
    "pied-piper",
    "soylent",
    "tyrell",
    "wonka",
    "gringotts",
    "oceanic",
    "cyberdyne",
]

# Default SLA targets in hours (first response, resolution), around the clock: the SLA
# engine's seeded policy. Demo tickets get due times and breach marks from them.
SLA_HOURS = {"urgent": (1, 4), "high": (4, 24), "normal": (8, 72), "low": (24, 120)}

CANNED_REPLIES = [
    (
        "Reconnect mailbox",
        "Please reconnect your mailbox under Settings > Accounts > Reconnect. "
        "This refreshes the access token and usually restores syncing within a few minutes.",
    ),
    (
        "Need more details",
        "Thanks for reaching out. Could you send us a screenshot of the error, "
        "the browser you are using and the time it happened? That helps us find it in our logs.",
    ),
    (
        "Refund issued",
        "We've issued the refund. It will appear on your statement within five to "
        "ten business days, depending on your bank.",
    ),
    (
        "Fix deployed",
        "We've deployed a fix for this issue. Could you check whether everything works "
        "for you now? If not, just reply here and we'll take another look.",
    ),
    (
        "Feature request noted",
        "Thank you for the suggestion! We've passed it to our product team "
        "together with your use case. We can't promise a date, but we read every request.",
    ),
    (
        "Closing after no reply",
        "We haven't heard back from you, so we're closing this ticket for now. "
        "Reply any time and it will reopen.",
    ),
]


def add_arguments(parser) -> None:
    parser.add_argument(
        "--tickets",
        type=int,
        default=DEMO_TICKETS,
        metavar="N",
        help=f"Make sure at least N support tickets exist (default {DEMO_TICKETS}); "
        "--tickets 1000000 builds the benchmark set (1M tickets, ~5M comments) in minutes.",
    )


def seed_step(ctx: SeedContext) -> None:
    count = ctx.options.get("tickets", DEMO_TICKETS)
    if count is None or count < 0:
        raise ValueError("--tickets must be zero or more")
    seed_canned_replies(ctx)
    seed_tickets(count=count, ctx=ctx)
    seed_sla(ctx)


def seed_canned_replies(ctx: SeedContext) -> None:
    from tickets.models import CannedReply

    actor = (
        queries.assignable_agents().filter(is_superuser=True).first()
        or queries.assignable_agents().first()
    )
    if actor is None:
        return
    present = set(CannedReply.objects.values_list("title", flat=True))
    for title, body in CANNED_REPLIES:
        if title in present:
            ctx.existing()
        else:
            services.create_canned_reply(actor=actor, title=title, body=body)
            ctx.created()


def seed_sla(ctx: SeedContext) -> None:
    """Support tiers for the customers who have none (set-based: every tenth enterprise,
    every fourth business), an office-hours calendar
    leads can attach to policies, and a first-line team of every agent (routing stays manual
    until a lead turns it on at /admin/support/agents/)."""
    from tickets.models import BusinessCalendar, SupportTeam

    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO tickets_customerprofile (user_id, tier, updated_at)
               SELECT u.id,
                      CASE WHEN u.id % 10 = 0 THEN 'enterprise'
                           WHEN u.id % 4 = 0 THEN 'business' ELSE 'standard' END,
                      now()
                 FROM auth_user u
                WHERE NOT u.is_staff
                  AND NOT EXISTS (SELECT 1 FROM tickets_customerprofile p WHERE p.user_id = u.id)"""
        )
        added = cursor.rowcount
    if added:
        ctx.created(added)
    lead = next(
        (
            user
            for user in queries.assignable_agents()
            if user.has_perms(["tickets.add_businesscalendar", "tickets.add_supportteam"])
        ),
        None,
    )
    if lead is None:
        return
    if BusinessCalendar.objects.filter(name="Office hours (Berlin)").exists():
        ctx.existing()
    else:
        services.create_calendar(
            actor=lead,
            name="Office hours (Berlin)",
            time_zone="Europe/Berlin",
            weekly_hours=[[[540, 1080]]] * 5 + [[], []],
            holiday_country="DE",
        )
        ctx.created()
    if SupportTeam.objects.filter(name="First line").exists():
        ctx.existing()
    else:
        services.create_team(
            actor=lead, name="First line", members=list(queries.assignable_agents())
        )
        ctx.created()


def seed_tickets(*, count: int, ctx: SeedContext) -> int:
    """Add tickets until ``count`` exist; returns how many were added."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM tickets_ticket")
        existing = cursor.fetchone()[0]
    ctx.existing(existing)
    to_add = count - existing
    if to_add <= 0:
        return 0
    loader = _BulkLoader(to_add, ctx)
    with transaction.atomic():  # SET LOCAL and the trigger switches end with it
        loader.run()
    ctx.created(loader.rows_created)
    return to_add


class _BulkLoader:
    def __init__(self, count: int, ctx: SeedContext) -> None:
        self.count = count
        self.ctx = ctx
        self.now = timezone.now()
        self.span_days = max(21, math.ceil(count / TICKETS_PER_DAY))
        self.rebuild_indexes = count >= REBUILD_INDEXES_FROM
        self.rows_created = 0
        self.saved_indexes: list[tuple[str, str]] = []

    # Each phase is one or a few set-based statements.
    def run(self) -> None:
        phases = [
            ("Preparing", self.prepare),
            ("Customers", self.ensure_customers),
            ("Ticket rows", self.stage_tickets),
            ("Comment rows", self.stage_comments),
            ("Search vectors", self.compute_vectors),
            ("Tickets", self.insert_tickets),
            ("SLA history", self.insert_sla_targets),
            ("Comments", self.insert_comments),
            ("Timelines", self.insert_events),
            ("Indexes", self.finish),
        ]
        started = time.monotonic()
        bar = self.ctx.progress(phases, desc=f"Tickets +{self.count:,}", total=len(phases))
        timings = []
        with connection.cursor() as cursor:
            self.cursor = cursor
            for label, phase in bar:
                if hasattr(bar, "set_postfix_str"):
                    bar.set_postfix_str(label)
                phase_started = time.monotonic()
                phase()
                timings.append(f"{label.lower()} {time.monotonic() - phase_started:.0f} s")
        self.ctx.add_note(
            f"Tickets: added {self.count:,} tickets with their comments and timelines "
            f"in {time.monotonic() - started:.0f} s ({', '.join(timings)})."
        )

    def sql(self, statement: str, params=None) -> int:
        self.cursor.execute(statement, params)
        return self.cursor.rowcount

    # --- phases ------------------------------------------------------------------------

    TEMP_TABLES = (
        "seed_agents",
        "seed_categories",
        "seed_customers",
        "seed_t",
        "seed_c",
        "seed_vectors",
        "seed_thread",
    )

    def drop_temp_tables(self) -> None:
        # ON COMMIT DROP covers the usual case; a load inside a longer transaction (a test,
        # a second seed in one run) must not find the previous load's tables.
        self.sql(f"DROP TABLE IF EXISTS {', '.join(self.TEMP_TABLES)}")

    def prepare(self) -> None:
        self.drop_temp_tables()
        self.sql("SET LOCAL work_mem = '256MB'")
        self.sql("SET LOCAL maintenance_work_mem = '1GB'")
        self.cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        superuser = self.cursor.fetchone()[0]
        if superuser:
            # Replica mode skips every trigger, foreign-key checks included: the rows are
            # generated consistent, and checking 6M references one by one would double
            # the time. Reset in finish().
            self.sql("SET LOCAL session_replication_role = replica")
        else:
            # The table owner can still switch off the search triggers: vectors are computed
            # here, in bulk.
            self.sql("ALTER TABLE tickets_ticket DISABLE TRIGGER tickets_ticket_search")
            self.sql("ALTER TABLE tickets_ticket DISABLE TRIGGER tickets_count_insert")
            self.sql("ALTER TABLE tickets_comment DISABLE TRIGGER tickets_comment_inserted")
        self.superuser = superuser
        if self.rebuild_indexes:
            for table in ("tickets_ticket", "tickets_comment", "tickets_ticketevent"):
                self.cursor.execute(
                    """SELECT indexname, indexdef FROM pg_indexes i
                        WHERE schemaname = current_schema() AND tablename = %s
                          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
                    [table],
                )
                for name, definition in self.cursor.fetchall():
                    self.saved_indexes.append((name, definition))
                    self.sql(f'DROP INDEX "{name}"')

        agents = list(
            queries.assignable_agents().values_list("pk", "first_name", "last_name", "username")
        )
        if not agents:
            raise ValueError("No staff user can work tickets: seed the staff users first.")
        self.sql(
            "CREATE TEMP TABLE seed_agents (k int PRIMARY KEY, id bigint, name text) ON COMMIT DROP"
        )
        self.cursor.executemany(
            "INSERT INTO seed_agents VALUES (%s, %s, %s)",
            [
                (k, pk, f"{first} {last}".strip() or username)
                for k, (pk, first, last, username) in enumerate(agents, 1)
            ],
        )
        self.agent_count = len(agents)

        self.sql(
            "CREATE TEMP TABLE seed_categories (k int PRIMARY KEY, id bigint, share float8) ON COMMIT DROP"
        )
        categories = {c.slug: c.pk for c in queries.category_choices()}
        texts = [(slug, CATEGORY_TEXT[slug]) for slug in CATEGORY_TEXT if slug in categories]
        if not texts:
            raise ValueError("The seeded ticket categories are missing: run the migrations first.")
        total_share = sum(share for _, (share, _, _) in texts)
        cumulative = 0.0
        rows = []
        for k, (slug, (share, _subjects, _sentences)) in enumerate(texts, 1):
            cumulative += share / total_share
            rows.append((k, categories[slug], 1.0 if k == len(texts) else cumulative))
        self.cursor.executemany("INSERT INTO seed_categories VALUES (%s, %s, %s)", rows)
        self.subjects = [subjects for _, (_, subjects, _) in texts]
        self.sentences = [sentences for _, (_, _, sentences) in texts]

    def ensure_customers(self) -> None:
        self.cursor.execute("SELECT count(*) FROM auth_user WHERE NOT is_staff AND is_active")
        have = self.cursor.fetchone()[0]
        want = self.count // TICKETS_PER_CUSTOMER if self.count >= 2000 else 0
        if want > have:
            self.cursor.execute(
                r"SELECT coalesce(max(substring(username FROM 13)::int), 0) FROM auth_user"
                r" WHERE username ~ '^bulkcustomer[0-9]+$'"
            )
            start = self.cursor.fetchone()[0] + 1
            added = self.sql(
                """
                INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,
                                       is_staff, is_active, date_joined)
                SELECT '!' || md5(random()::text), false, 'bulkcustomer' || g, f, l,
                       lower(f) || '.' || lower(l) || '.' || g || '@' || c || '.example',
                       false, true, %(now)s::timestamptz - random() * %(span)s * interval '1 day'
                  FROM (SELECT g,
                               (%(first)s::text[])[1 + floor(random() * cardinality(%(first)s::text[]))::int] AS f,
                               (%(last)s::text[])[1 + floor(random() * cardinality(%(last)s::text[]))::int] AS l,
                               (%(companies)s::text[])[1 + floor(random() * cardinality(%(companies)s::text[]))::int] AS c
                          FROM generate_series(%(start)s, %(stop)s) g) names
                """,
                {
                    "now": self.now,
                    "span": self.span_days + 365,
                    "first": FIRST_NAMES,
                    "last": LAST_NAMES,
                    "companies": COMPANIES,
                    "start": start,
                    "stop": start + want - have - 1,
                },
            )
            self.rows_created += added
        self.sql(
            """CREATE TEMP TABLE seed_customers ON COMMIT DROP AS
               SELECT row_number() OVER (ORDER BY id)::int AS k, id FROM auth_user WHERE NOT is_staff AND is_active"""
        )
        self.sql("ALTER TABLE seed_customers ADD PRIMARY KEY (k)")
        self.cursor.execute("SELECT count(*) FROM seed_customers")
        self.customer_count = self.cursor.fetchone()[0]
        if not self.customer_count:
            raise ValueError("No customer accounts: seed the customers first.")

    def stage_tickets(self) -> None:
        sla = {p: [f"{first} hours", f"{res} hours"] for p, (first, res) in SLA_HOURS.items()}
        # ``base`` holds every random draw; it is materialised once (a CTE with volatile
        # functions is never inlined), so each row's draws stay fixed in the joins below and
        # ids and ticket numbers follow creation time.
        self.sql(
            """
            CREATE TEMP TABLE seed_t ON COMMIT DROP AS
            WITH base AS (
                SELECT g AS n,
                       nextval(pg_get_serial_sequence('tickets_ticket', 'id')) AS id,
                       nextval('tickets_ticket_number_seq') AS ticket_number,
                       %(now)s::timestamptz
                         - (%(span)s * (1 - g::float8 / %(count)s)) * interval '1 day'
                         - random() * interval '20 minutes' AS created_at,
                       random() AS r_status, random() AS r_priority, random() AS r_category,
                       random() AS r_channel, random() AS r_assign, random() AS r_tag,
                       random() AS r_customer, random() AS r_agent, random() AS r_response,
                       random() AS r_resolution, random() AS r_comments,
                       1 + floor(random() * 10)::int AS subject_k,
                       1 + floor(random() * 8)::int AS sentence1_k,
                       1 + floor(random() * 8)::int AS sentence2_k,
                       1 + floor(random() * cardinality(%(closers)s::text[]))::int AS closer_k,
                       (%(providers)s::text[])[1 + floor(random() * cardinality(%(providers)s::text[]))::int]
                         AS provider,
                       'E' || lpad(floor(random() * 10000)::int::text, 4, '0') AS code,
                       'INV-' || (20000 + floor(random() * 80000)::int) AS invoice
                  FROM generate_series(1, %(count)s) g
            ), shaped AS (
                SELECT b.*,
                       extract(epoch FROM %(now)s::timestamptz - b.created_at) / 86400 AS age_days,
                       (SELECT min(k) FROM seed_categories c WHERE c.share >= b.r_category) AS cat_k,
                       CASE WHEN r_priority < .20 THEN 'low' WHEN r_priority < .70 THEN 'normal'
                            WHEN r_priority < .92 THEN 'high' ELSE 'urgent' END AS priority,
                       mod(b.n, %(long_every)s) = %(long_every)s / 2 AS long_thread
                  FROM base b
            ), statused AS (
                SELECT s.*,
                       CASE
                         WHEN long_thread THEN 'open'
                         WHEN age_days < 1 THEN CASE WHEN r_status < .40 THEN 'new' WHEN r_status < .75 THEN 'open'
                              WHEN r_status < .90 THEN 'pending' WHEN r_status < .95 THEN 'on_hold' ELSE 'resolved' END
                         WHEN age_days < 7 THEN CASE WHEN r_status < .05 THEN 'new' WHEN r_status < .30 THEN 'open'
                              WHEN r_status < .50 THEN 'pending' WHEN r_status < .55 THEN 'on_hold'
                              WHEN r_status < .90 THEN 'resolved' ELSE 'closed' END
                         WHEN age_days < 30 THEN CASE WHEN r_status < .05 THEN 'open' WHEN r_status < .10 THEN 'pending'
                              WHEN r_status < .12 THEN 'on_hold' WHEN r_status < .30 THEN 'resolved' ELSE 'closed' END
                         ELSE CASE WHEN r_status < .006 THEN 'open' WHEN r_status < .012 THEN 'pending'
                              WHEN r_status < .02 THEN 'on_hold' ELSE 'closed' END
                       END AS status,
                       (%(sla)s::jsonb -> priority ->> 0)::interval AS first_target,
                       (%(sla)s::jsonb -> priority ->> 1)::interval AS resolution_target
                  FROM shaped s
            ), timed AS (
                SELECT t.*,
                       CASE WHEN status = 'new' THEN NULL
                            ELSE least(created_at + r_response ^ 3 * first_target * 1.3, %(now)s::timestamptz) END
                         AS first_responded_at,
                       CASE WHEN status IN ('resolved', 'closed')
                            THEN least(created_at + first_target + r_resolution ^ 3 * resolution_target * 1.2,
                                       %(now)s::timestamptz) END AS resolved_at
                  FROM statused t
            )
            SELECT t.n, t.id, t.ticket_number, t.created_at, t.status, t.priority, t.channel_draw,
                   t.category_id, t.requester_id, t.agent_id, t.agent_name, t.first_responded_at,
                   t.resolved_at, t.provider, t.code,
                   CASE WHEN t.channel_draw < .6 THEN 'web' WHEN t.channel_draw < .9 THEN 'email' ELSE 'api' END
                     AS channel,
                   CASE WHEN t.status = 'new' AND t.r_assign < .5 THEN NULL
                        WHEN t.status <> 'new' AND t.r_assign < .03 THEN NULL
                        ELSE t.agent_id END AS assignee_id,
                   CASE WHEN t.r_tag < .20 THEN ARRAY[(%(tags)s::text[])[1 + floor(t.r_tag * 80)::int]]
                        WHEN t.r_tag < .30 THEN ARRAY[(%(tags)s::text[])[1 + floor(t.r_tag * 50)::int],
                                                      (%(tags)s::text[])[1 + mod(floor(t.r_tag * 997)::int, 10)]]
                        ELSE '{}'::text[] END AS tags,
                   CASE WHEN t.status = 'closed'
                        THEN least(t.resolved_at + interval '3 days', %(now)s::timestamptz) END AS closed_at,
                   t.created_at + t.first_target AS first_response_due_at,
                   t.created_at + t.resolution_target AS resolution_due_at,
                   coalesce(t.first_responded_at > t.created_at + t.first_target, false)
                     OR coalesce(t.resolved_at > t.created_at + t.resolution_target, false)
                     OR (t.status IN ('new', 'open') AND t.first_responded_at IS NULL
                         AND %(now)s::timestamptz > t.created_at + t.first_target)
                     OR (t.status IN ('new', 'open') AND %(now)s::timestamptz > t.created_at + t.resolution_target)
                     AS sla_breached,
                   CASE WHEN t.long_thread THEN %(long_comments)s
                        WHEN t.status = 'new' THEN 0
                        ELSE 1 + floor(t.r_comments * 9)::int END AS comment_count,
                   replace(replace(replace(
                       (%(subjects)s::text[])[t.cat_k][t.subject_k],
                       '{provider}', t.provider), '{code}', t.code), '{invoice}', t.invoice) AS subject,
                   replace(replace(replace((%(sentences)s::text[])[t.cat_k][t.sentence1_k],
                       '{provider}', t.provider), '{code}', t.code), '{invoice}', t.invoice) AS part1,
                   replace(replace(replace(
                       (%(sentences)s::text[])[t.cat_k][1 + mod(t.sentence1_k + t.sentence2_k - 1, 8)],
                       '{provider}', t.provider), '{code}', t.code), '{invoice}', t.invoice) AS part2,
                   (%(closers)s::text[])[t.closer_k] AS part3
              FROM (SELECT timed.*, timed.r_channel AS channel_draw, cat.id AS category_id,
                           cust.id AS requester_id, agent.id AS agent_id, agent.name AS agent_name
                      FROM timed
                      JOIN seed_categories cat ON cat.k = timed.cat_k
                      JOIN seed_customers cust
                        ON cust.k = 1 + floor(%(customers)s * timed.r_customer * timed.r_customer)::int
                      JOIN seed_agents agent ON agent.k = 1 + floor(%(agents)s * timed.r_agent)::int) t
            """,
            {
                "now": self.now,
                "span": self.span_days,
                "count": self.count,
                "long_every": LONG_THREAD_EVERY,
                "long_comments": LONG_THREAD_COMMENTS,
                "sla": _json(sla),
                "tags": TAGS,
                "providers": PROVIDERS,
                "customers": self.customer_count,
                "agents": self.agent_count,
                "subjects": self.subjects,
                "sentences": self.sentences,
                "closers": CLOSERS,
            },
        )
        self.sql("ANALYZE seed_t")

    def stage_comments(self) -> None:
        # Odd comments are staff (the first always a public reply, later ones one in four an
        # internal note), even ones the customer's answers; about one in seven is a threaded
        # reply to the comment before it (never to an internal note).
        self.sql(
            """
            CREATE TEMP TABLE seed_c ON COMMIT DROP AS
            SELECT t.id AS ticket_id, s.i,
                   nextval(pg_get_serial_sequence('tickets_comment', 'id')) AS id,
                   mod(s.i, 2) = 1 AND s.i > 1 AND mod(t.id * 7 + s.i * 13, 4) = 0 AS is_internal,
                   mod(s.i, 2) = 0 AND mod(t.id * 7 + (s.i - 1) * 13, 4) <> 0 AND random() < .15 AS threaded,
                   CASE WHEN mod(s.i, 2) = 1 THEN coalesce(t.assignee_id, t.agent_id) ELSE t.requester_id END
                     AS author_id,
                   t.first_responded_at
                     + (coalesce(t.resolved_at, %(now)s::timestamptz) - t.first_responded_at)
                       * ((s.i - 1)::float8 / t.comment_count) AS created_at,
                   replace(replace(
                       CASE WHEN mod(s.i, 2) = 1 AND s.i > 1 AND mod(t.id * 7 + s.i * 13, 4) = 0
                              THEN (%(internal)s::text[])[1 + floor(random() * cardinality(%(internal)s::text[]))::int]
                            WHEN mod(s.i, 2) = 1
                              THEN (%(staff)s::text[])[1 + floor(random() * cardinality(%(staff)s::text[]))::int]
                            ELSE (%(customer)s::text[])[1 + floor(random() * cardinality(%(customer)s::text[]))::int]
                       END, '{provider}', t.provider), '{code}', t.code) AS body
              FROM seed_t t
              CROSS JOIN LATERAL generate_series(1, t.comment_count) s(i)
             WHERE t.comment_count > 0
            """,
            {
                "now": self.now,
                "internal": INTERNAL_NOTES,
                "staff": STAFF_REPLIES,
                "customer": CUSTOMER_REPLIES,
            },
        )

    def compute_vectors(self) -> None:
        # The generated texts repeat (a few dozen templates times their placeholders), so
        # each distinct text is parsed once and a ticket's vector is the concatenation of
        # its parts' vectors: the same lexemes as parsing the whole, for a fraction of the
        # time (parsing is most of the cost of a million tickets).
        self.sql(
            """
            CREATE TEMP TABLE seed_vectors ON COMMIT DROP AS
            SELECT txt, to_tsvector(%(config)s::regconfig, txt) AS v
              FROM (SELECT subject AS txt FROM seed_t UNION SELECT part1 FROM seed_t
                    UNION SELECT part2 FROM seed_t UNION SELECT part3 FROM seed_t
                    UNION SELECT body FROM seed_c) texts
            """,
            {"config": SEARCH_CONFIG},
        )
        self.sql("ANALYZE seed_vectors")
        self.sql(
            """CREATE OR REPLACE AGGREGATE pg_temp.seed_tsvector_agg(tsvector)
               (SFUNC = tsvector_concat, STYPE = tsvector, INITCOND = '')"""
        )
        self.sql(
            """
            CREATE TEMP TABLE seed_thread ON COMMIT DROP AS
            SELECT c.ticket_id, pg_temp.seed_tsvector_agg(v.v ORDER BY c.i) AS v,
                   max(c.created_at) AS last_at
              FROM seed_c c JOIN seed_vectors v ON v.txt = c.body
             GROUP BY c.ticket_id
            """
        )
        self.sql("ANALYZE seed_thread")

    def insert_tickets(self) -> None:
        self.rows_created += self.sql(
            """
            INSERT INTO tickets_ticket (
                id, ticket_number, subject, description, category_id, priority, status, channel,
                requester_id, assignee_id, tags, created_at, updated_at, first_responded_at,
                resolved_at, closed_at, first_response_due_at, resolution_due_at,
                sla_first_response_warning, sla_resolution_warning, sla_breached, search_vector,
                first_response_warn_at, resolution_warn_at, sla_first_response_breached,
                sla_resolution_breached, sla_policy_id, sla_paused_at)
            SELECT t.id, t.ticket_number, t.subject, t.part1 || ' ' || t.part2 || ' ' || t.part3,
                   t.category_id, t.priority, t.status, t.channel, t.requester_id, t.assignee_id,
                   t.tags, t.created_at, w.updated_at,
                   t.first_responded_at, t.resolved_at, t.closed_at,
                   t.first_response_due_at, t.resolution_due_at,
                   coalesce(t.first_responded_at, t.resolved_at, %(now)s) >= w.fr_warn,
                   coalesce(t.resolved_at, %(now)s) >= w.res_warn, t.sla_breached,
                   setweight(vs.v, 'A') || setweight(v1.v || v2.v || v3.v, 'B')
                     || coalesce(setweight(c.v, 'C'), ''::tsvector),
                   w.fr_warn, w.res_warn,
                   coalesce(t.first_responded_at > t.first_response_due_at, false)
                     OR (t.status IN ('new', 'open') AND t.first_responded_at IS NULL
                         AND %(now)s > t.first_response_due_at),
                   coalesce(t.resolved_at > t.resolution_due_at, false)
                     OR (t.status IN ('new', 'open') AND %(now)s > t.resolution_due_at),
                   (SELECT p.id FROM tickets_slapolicy p
                     WHERE p.is_active AND p.priority = t.priority AND p.category_id IS NULL
                       AND p.customer_tier = '' ORDER BY p.position, p.id LIMIT 1),
                   CASE WHEN t.status IN ('pending', 'on_hold') THEN w.updated_at END
              FROM seed_t t
              JOIN seed_vectors vs ON vs.txt = t.subject
              JOIN seed_vectors v1 ON v1.txt = t.part1
              JOIN seed_vectors v2 ON v2.txt = t.part2
              JOIN seed_vectors v3 ON v3.txt = t.part3
              LEFT JOIN seed_thread c ON c.ticket_id = t.id
              CROSS JOIN LATERAL (
                SELECT greatest(t.created_at, t.first_responded_at, t.resolved_at, t.closed_at,
                                c.last_at) AS updated_at,
                       t.created_at + (t.first_response_due_at - t.created_at) * 0.8 AS fr_warn,
                       t.created_at + (t.resolution_due_at - t.created_at) * 0.8 AS res_warn
              ) w
            """,
            {"now": self.now},
        )

    def insert_sla_targets(self) -> None:
        """The SLA history of the new tickets: one first-response and one resolution target
        each, met or breached as their times say (the default policies run around the clock,
        so business time is elapsed time)."""
        self.sql(
            """
            INSERT INTO tickets_slatarget (
                ticket_id, kind, cycle, policy_id, policy_name, priority, category_id,
                assignee_id, target_seconds, started_at, due_at, warn_at, paused_seconds,
                warned_at, breached_at, completed_at, outcome, margin_seconds)
            SELECT t.id, k.kind, 1, t.sla_policy_id, coalesce(p.name, ''), t.priority,
                   t.category_id, t.assignee_id,
                   extract(epoch FROM k.due - t.created_at)::int, t.created_at, k.due, k.warn, 0,
                   CASE WHEN k.warned THEN k.warn END, CASE WHEN k.breached THEN k.due END,
                   k.done,
                   CASE WHEN k.done IS NULL THEN 'running' WHEN k.done <= k.due THEN 'met'
                        ELSE 'breached' END,
                   extract(epoch FROM k.due - k.done)::bigint
              FROM tickets_ticket t
              JOIN seed_t s ON s.id = t.id
              LEFT JOIN tickets_slapolicy p ON p.id = t.sla_policy_id
              CROSS JOIN LATERAL (
                VALUES ('first_response', t.first_response_due_at, t.first_response_warn_at,
                        t.sla_first_response_warning, t.sla_first_response_breached,
                        coalesce(t.first_responded_at, t.resolved_at)),
                       ('resolution', t.resolution_due_at, t.resolution_warn_at,
                        t.sla_resolution_warning, t.sla_resolution_breached, t.resolved_at)
              ) AS k(kind, due, warn, warned, breached, done)
            """
        )

    def insert_comments(self) -> None:
        self.rows_created += self.sql(
            """
            INSERT INTO tickets_comment (id, ticket_id, author_id, body, is_internal, parent_id, created_at)
            SELECT id, ticket_id, author_id, body, is_internal,
                   CASE WHEN threaded THEN lag(id) OVER (PARTITION BY ticket_id ORDER BY i) END,
                   created_at
              FROM seed_c
            """
        )

    def insert_events(self) -> None:
        self.rows_created += self.sql(
            """
            INSERT INTO tickets_ticketevent (ticket_id, kind, from_value, to_value, actor_id, created_at)
            SELECT id, 'created', '', 'new', NULL, created_at FROM seed_t
            UNION ALL
            SELECT id, 'assignee', '', agent_name, agent_id, created_at + interval '2 minutes'
              FROM seed_t WHERE assignee_id IS NOT NULL
            UNION ALL
            SELECT id, 'status', 'new', status, agent_id,
                   coalesce(closed_at, resolved_at, first_responded_at, created_at + interval '3 minutes')
              FROM seed_t WHERE status <> 'new'
            """
        )

    def finish(self) -> None:
        if self.superuser:
            self.sql("SET LOCAL session_replication_role = DEFAULT")
        else:
            self.sql("ALTER TABLE tickets_ticket ENABLE TRIGGER tickets_ticket_search")
            self.sql("ALTER TABLE tickets_ticket ENABLE TRIGGER tickets_count_insert")
            self.sql("ALTER TABLE tickets_comment ENABLE TRIGGER tickets_comment_inserted")
        if self.saved_indexes:
            self.sql("SET LOCAL max_parallel_maintenance_workers = 2")
            for _name, definition in self.saved_indexes:
                self.sql(definition)
        # The counters' insert trigger was off: recount them from the tickets (one pass).
        self.sql("LOCK TABLE tickets_ticket IN SHARE MODE")
        self.sql("SELECT tickets_rebuild_counts()")
        self.sql(
            "ANALYZE tickets_ticket, tickets_comment, tickets_ticketevent, tickets_ticketcount, "
            "tickets_slatarget, auth_user"
        )
        self.drop_temp_tables()


def _json(value) -> str:
    return json.dumps(value)


register_step(
    SeedStep(
        "tickets",
        seed_step,
        order=200,
        arguments=add_arguments,
        help="support tickets with comments, timelines and canned replies",
    )
)
