"""The hash chain: sealing, concurrent writers, the append-only guards, tamper detection by
audit_verify, checkpoints and GDPR erasure."""

from __future__ import annotations

import io
import signal
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, transaction

from audit import chain, services
from audit.context import audit_context
from audit.models import AuditEntry, ChainLink
from audit.services import record
from tests.audit.conftest import as_superuser, child_env, manage_py, seal
from tests.processes import wait_until


def write(count: int, event: str = "ticket.updated", **kwargs) -> list[AuditEntry]:
    return [record(event, data={"n": number}, **kwargs) for number in range(count)]


def verify_command(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("audit_verify", "--no-progress", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


# --- sealing --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_seal_links_committed_entries_in_order_and_leaves_none_pending():
    with transaction.atomic():
        first, second = write(2)
        # Inside the writer's transaction nothing waits for the chain.
        assert not ChainLink.objects.filter(entry_id__in=[first.pk, second.pk]).exists()
    assert chain.seal() >= 2
    links = list(ChainLink.objects.filter(entry_id__in=[first.pk, second.pk]).order_by("seq"))
    assert [link.entry_id for link in links] == [first.pk, second.pk]
    assert links[1].seq == links[0].seq + 1 and bytes(links[1].prev_hash) == bytes(links[0].hash)
    assert not chain.has_unsealed()
    assert chain.verify().ok


@pytest.mark.django_db(transaction=True)
def test_a_backlog_larger_than_a_batch_is_linked_in_id_order_in_one_call():
    seal()
    made = write(7)
    assert chain.seal(batch_size=3) == 7
    links = list(ChainLink.objects.filter(entry_id__in=[e.pk for e in made]).order_by("seq"))
    assert [link.entry_id for link in links] == [e.pk for e in made]
    assert [link.seq for link in links] == list(range(links[0].seq, links[0].seq + 7))
    assert not chain.has_unsealed()
    assert chain.verify().ok


@pytest.mark.django_db(transaction=True)
def test_the_sealer_loop_links_what_was_committed_before_each_pause():
    made = write(3)
    rounds = []

    def stop_after_two_rounds() -> bool:
        rounds.append(None)
        return len(rounds) > 2

    assert chain.run_sealer(interval=0.01, should_stop=stop_after_two_rounds) >= 3
    assert ChainLink.objects.filter(entry_id__in=[e.pk for e in made]).count() == 3
    assert not chain.has_unsealed()


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_entry_never_reaches_the_chain():
    seal()
    before = ChainLink.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        record("ticket.created")
        raise RuntimeError
    assert ChainLink.objects.count() == before and not chain.has_unsealed()


@pytest.mark.parametrize("entry_written", ["before", "after"])
def test_an_entry_of_a_transaction_running_while_the_sealer_looked_is_linked_once_it_commits(
    transactional_db, entry_written
):
    """The sealer remembers the snapshot it sealed up to; a transaction still running in it
    (whose entry was invisible then, or not even written yet) commits later and is linked."""
    import psycopg

    seal()
    other = psycopg.connect(**connection.get_connection_params())
    try:
        other.execute("SELECT pg_current_xact_id()")  # the transaction has its id from here
        insert = (
            "INSERT INTO audit_auditentry (timestamp, event, action, source, actor_name, actor_email,"
            " impersonator_name, user_agent, object_pk, object_repr, changes_text)"
            " VALUES (now(), 'test.late', 4, 'test', 'system', '', '', '', '', '', '') RETURNING id"
        )
        if entry_written == "before":
            late = other.execute(insert).fetchone()[0]
        early = record("ticket.updated")
        assert chain.seal() == 1  # the committed entry only
        if entry_written == "after":
            late = other.execute(insert).fetchone()[0]
        other.commit()
    finally:
        other.close()
    assert chain.has_unsealed()
    assert chain.seal() == 1
    linked = ChainLink.objects.filter(entry_id__in=[early.pk, late]).order_by("seq")
    assert [link.entry_id for link in linked] == [early.pk, late]
    assert not chain.has_unsealed() and chain.verify().ok


def test_after_a_restore_into_another_server_sealing_goes_on(transactional_db):
    """A dump restored into another server keeps the old server's transaction ids in the
    entries and in the remembered snapshot, while the new server counts from lower down."""
    seal()
    unlinked_at_dump = record("ticket.updated")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::numeric")
        ahead = cursor.fetchone()[0] + 1_000_000
    # As restored: the remembered snapshot is far ahead of this server's counter.
    as_superuser("UPDATE audit_sealstate SET snapshot = %s::pg_snapshot", [f"{ahead}:{ahead}:"])
    written_after = record("ticket.updated")
    assert chain.has_unsealed()
    assert chain.seal() == 2
    assert set(
        ChainLink.objects.filter(entry_id__in=[unlinked_at_dump.pk, written_after.pk]).values_list(
            "entry_id", flat=True
        )
    ) == {unlinked_at_dump.pk, written_after.pk}
    # From then on, rounds look at the ids handed out since the last one, as before.
    later = record("ticket.updated")
    assert chain.seal() == 1 and ChainLink.objects.filter(entry_id=later.pk).exists()
    assert not chain.has_unsealed() and chain.verify().ok


def test_writing_an_entry_never_seals_in_the_writers_transaction_or_after_its_commit(
    transactional_db,
):
    """Sealing belongs to the sealer process: a request pays for its insert only."""
    with transaction.atomic():
        entry = record("ticket.updated")
        assert not connection.run_on_commit
    assert not ChainLink.objects.filter(entry_id=entry.pk).exists()
    assert chain.has_unsealed()


@pytest.mark.django_db(transaction=True)
def test_the_sealer_process_links_entries_as_they_commit_and_stops_cleanly_on_sigterm():
    sealer = subprocess.Popen(  # noqa: S603 - our own command
        [sys.executable, "manage.py", "audit_sealer", "--interval", "0.05"],
        cwd=settings.BASE_DIR,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "Audit sealer running" in sealer.stdout.readline()
        entries = [record("ticket.updated", data={"n": n}) for n in range(5)]
        wait_until(
            lambda: ChainLink.objects.filter(entry_id__in=[e.pk for e in entries]).count() == 5,
            timeout=20,
            what="the sealer to link five committed entries",
        )
        sealer.send_signal(signal.SIGTERM)
        out, err = sealer.communicate(timeout=20)
    finally:
        if sealer.poll() is None:
            sealer.kill()
    assert sealer.returncode == 0, err
    assert "Audit sealer stopped after linking" in out
    assert not chain.has_unsealed()
    assert chain.verify().ok


@pytest.mark.parametrize("interval", ["0", "120"])
def test_the_sealer_refuses_an_interval_out_of_range(interval):
    with pytest.raises(CommandError, match="--interval must be between 0.01 and 60 seconds"):
        call_command("audit_sealer", "--interval", interval)


def test_a_sealer_finding_the_lock_taken_leaves_the_entries_to_the_holder(transactional_db):
    """Another process holds the sealing lock: this one returns at once without linking; once
    the lock is free the next seal links everything."""
    other = connections.create_connection("default")
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [chain.SEAL_LOCK_KEY])
        entry = record("ticket.created")  # autocommit: committed at once
        assert not ChainLink.objects.filter(entry_id=entry.pk).exists()
        assert chain.seal() == 0
        other.rollback()
    finally:
        other.close()
    assert chain.seal() >= 1
    assert ChainLink.objects.filter(entry_id=entry.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_writer_processes_produce_one_unbroken_chain():
    """Eight writers commit side by side while two sealer processes compete for the sealing
    lock: one chain, no fork, no gap, nothing left behind."""
    writers, per_writer = 8, 150
    before_entries = AuditEntry.objects.count()
    seal()
    sealers = [
        subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, "manage.py", "audit_sealer", "--interval", "0.02"],
            cwd=settings.BASE_DIR,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    procs = [
        subprocess.Popen(  # noqa: S603 - our own module
            [sys.executable, "-m", "tests.audit.chain_writer", str(per_writer), f"w{number}"],
            cwd=settings.BASE_DIR,
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for number in range(writers)
    ]
    try:
        for sealer in sealers:
            assert "Audit sealer running" in sealer.stdout.readline(), sealer.stderr.read()
        for proc in procs:  # every writer has Django up and a connection open
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        for proc in procs:  # then all start at once
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in procs:
            proc.stdin.close()
            assert proc.wait(timeout=240) == 0, proc.stderr.read()
        wait_until(
            lambda: not chain.has_unsealed(),
            timeout=60,
            what="the sealers to link every entry",
        )
        for sealer in sealers:
            sealer.send_signal(signal.SIGTERM)
            assert sealer.wait(timeout=30) == 0, sealer.stderr.read()
    finally:
        for proc in [*procs, *sealers]:
            if proc.poll() is None:
                proc.kill()

    written = AuditEntry.objects.filter(event="test.concurrent")
    assert written.count() == writers * per_writer
    assert AuditEntry.objects.count() == before_entries + writers * per_writer
    # Every entry linked, none left behind, no fork, no gap.
    assert not chain.has_unsealed()
    assert ChainLink.objects.count() == AuditEntry.objects.count()
    seqs = list(ChainLink.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))
    report = chain.verify()
    assert report.ok, report.summary()
    # The writers really ran side by side: their entries interleave along the chain.
    order = [
        data["writer"]
        for data in written.order_by("link__seq").values_list("additional_data", flat=True)
    ]
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches >= writers, f"writers did not overlap ({switches} switches)"


# --- append-only ----------------------------------------------------------------------------


def test_update_and_delete_of_entries_are_rejected(db):
    entry = record("ticket.created", data={"a": 1})
    seal()
    for attempt in (
        lambda: AuditEntry.objects.filter(pk=entry.pk).update(event="ticket.deleted"),
        lambda: AuditEntry.objects.filter(pk=entry.pk).delete(),
        lambda: _sql("UPDATE audit_auditentry SET object_repr = 'x' WHERE id = %s", [entry.pk]),
        lambda: _sql("DELETE FROM audit_auditentry WHERE id = %s", [entry.pk]),
    ):
        with (
            pytest.raises(IntegrityError, match="audit entries are append-only"),
            transaction.atomic(),
        ):
            attempt()
    entry.refresh_from_db()
    assert entry.event == "ticket.created"


def test_update_and_delete_of_links_and_checkpoints_are_rejected(db):
    record("ticket.created")
    seal()
    services.create_checkpoint()
    for sql, message in (
        ("UPDATE audit_chainlink SET hash = prev_hash", "the audit chain is append-only"),
        ("DELETE FROM audit_chainlink", "the audit chain is append-only"),
        ("UPDATE audit_auditcheckpoint SET seq = 1", "audit checkpoints are append-only"),
        ("DELETE FROM audit_auditcheckpoint", "audit checkpoints are append-only"),
    ):
        with pytest.raises(IntegrityError, match=message), transaction.atomic():
            _sql(sql)


def test_the_purge_mode_does_not_open_unlinked_or_later_entries(db):
    old, new = write(2)
    seal()
    unsealed = record("ticket.created")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('audit.mode', 'purge', true), set_config('audit.purge_through', %s, true)",
                       [str(ChainLink.objects.get(entry_id=old.pk).seq)])  # fmt: skip
        for target in (new, unsealed):
            with pytest.raises(IntegrityError), transaction.atomic():
                cursor.execute("DELETE FROM audit_auditentry WHERE id = %s", [target.pk])


def _sql(sql: str, params=None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- tamper detection -----------------------------------------------------------------------


def test_an_intact_chain_verifies_and_the_command_prints_the_count(db):
    write(5)
    seal()
    code, out, err = verify_command()
    assert code == 0, err
    assert "Audit chain intact:" in out and f"{ChainLink.objects.count()} entries verified" in out


@pytest.mark.parametrize(
    ("column", "value", "what"),
    [
        ("object_repr", "'Ticket #9: harmless'", "its target text, changes or data"),
        ("event", "'ticket.viewed'", "its event, time, actor, target or request"),
        ("actor_name", "'someone else'", "its actor name, email, IP or user agent"),
        ("timestamp", "timestamp - interval '1 day'", "its event, time, actor, target or request"),
        ("additional_data", "'{\"n\": 99}'::jsonb", "its target text, changes or data"),
    ],
)
def test_changing_one_entry_in_the_database_makes_audit_verify_name_it(db, column, value, what):
    entries = write(5)
    seal()
    victim = entries[2]
    as_superuser(f'UPDATE audit_auditentry SET "{column}" = {value} WHERE id = %s', [victim.pk])  # noqa: S608

    code, _, err = verify_command()
    assert code == 1
    seq = ChainLink.objects.get(entry_id=victim.pk).seq
    assert (
        f"Audit chain BROKEN: entry {victim.pk} (seq {seq}) was altered after it was sealed: {what}"
        in err
    )
    report = chain.verify()
    assert [p.entry_id for p in report.problems] == [victim.pk]


@pytest.mark.django_db(transaction=True)
def test_manage_py_audit_verify_exits_1_naming_the_altered_entry():
    entries = write(4)
    seal()
    victim = entries[1]
    ok = manage_py("audit_verify", "--no-progress")
    assert ok.returncode == 0, ok.stderr
    assert "Audit chain intact" in ok.stdout
    as_superuser("UPDATE audit_auditentry SET object_repr = 'rewritten' WHERE id = %s", [victim.pk])
    broken = manage_py("audit_verify", "--no-progress")
    assert broken.returncode == 1
    assert f"entry {victim.pk} " in broken.stderr and "was altered" in broken.stderr


def test_deleting_the_newest_entries_is_caught_by_the_checkpoint(db):
    entries = write(6)
    seal()
    services.create_checkpoint()
    assert chain.verify().ok
    cut = [entry.pk for entry in entries[-2:]]
    as_superuser("DELETE FROM audit_chainlink WHERE entry_id = ANY(%s)", [cut])
    as_superuser("DELETE FROM audit_auditentry WHERE id = ANY(%s)", [cut])

    code, _, err = verify_command()
    assert code == 1
    head = ChainLink.objects.order_by("-seq").first().seq
    assert f"entries after seq {head} are missing" in err
    assert f"recorded entry {entries[-1].pk} at seq {head + 2}" in err


def test_deleting_a_middle_entry_is_detected(db):
    entries = write(5)
    seal()
    victim = entries[2]
    seq = ChainLink.objects.get(entry_id=victim.pk).seq
    as_superuser("DELETE FROM audit_auditentry WHERE id = %s", [victim.pk])
    report = chain.verify()
    assert report.first_problem.kind == "deleted"
    assert report.first_problem.message.startswith(f"entry {victim.pk} (seq {seq}) was deleted")

    as_superuser("DELETE FROM audit_chainlink WHERE seq = %s", [seq])
    report = chain.verify()
    assert report.first_problem.kind == "gap"
    assert f"links with seq {seq}–{seq} are missing" in report.first_problem.message


def test_deleting_the_oldest_entries_is_detected(db):
    write(4)
    seal()
    first = ChainLink.objects.order_by("seq").first()
    as_superuser("DELETE FROM audit_chainlink WHERE seq = %s", [first.seq])
    as_superuser("DELETE FROM audit_auditentry WHERE id = %s", [first.entry_id])
    report = chain.verify()
    assert report.first_problem.kind == "start_missing"
    assert "no retention purge recorded removing them" in report.first_problem.message


def test_a_rewritten_chain_is_caught_by_the_checkpoint(db):
    """Someone alters an entry and recomputes every hash after it: the links agree again,
    but the signed checkpoint still holds the old head."""
    entries = write(4)
    seal()
    services.create_checkpoint()
    victim = entries[0]
    victim_seq = ChainLink.objects.get(entry_id=victim.pk).seq
    as_superuser("UPDATE audit_auditentry SET object_repr = 'forged' WHERE id = %s", [victim.pk])
    as_superuser("DELETE FROM audit_chainlink WHERE seq >= %s", [victim_seq])
    # … and has the sealing step look at every entry again, which links the cut ones anew.
    as_superuser("UPDATE audit_sealstate SET snapshot = '1:1:'")
    seal()
    report = chain.verify()
    assert [p.kind for p in report.problems] == ["checkpoint"]
    assert "the chain was rewritten" in report.problems[0].message


def test_a_forged_checkpoint_is_detected(db):
    write(2)
    seal()
    checkpoint = services.create_checkpoint()
    as_superuser("UPDATE audit_auditcheckpoint SET seq = seq + 5 WHERE id = %s", [checkpoint.pk])
    report = chain.verify()
    assert report.problems[0].kind == "checkpoint"
    assert (
        f"checkpoint {checkpoint.pk} (daily, seq {checkpoint.seq + 5}) has an invalid signature"
        in report.problems[0].message
    )


def test_a_daily_checkpoint_is_skipped_when_the_head_has_not_moved(db):
    write(1)
    seal()
    assert services.create_checkpoint() is not None
    assert services.create_checkpoint() is None
    write(1)
    seal()
    assert services.create_checkpoint().seq == ChainLink.objects.order_by("-seq").first().seq


def test_entries_left_unlinked_are_reported(db):
    entry = record("ticket.created")
    report = chain.verify(stale_after_seconds=0)
    assert report.problems[0].kind == "unsealed"
    assert f"(oldest: entry {entry.pk})" in report.problems[0].message
    # Its transaction id replaced by an older one: the sealing step will never look at it.
    as_superuser("UPDATE audit_auditentry SET xid = '3' WHERE id = %s", [entry.pk])
    report = chain.verify(stale_after_seconds=0)
    assert "neither linked into the chain nor waiting to be" in report.problems[0].message
    assert f"(first: entry {entry.pk})" in report.problems[0].message


def test_each_entry_page_check_names_its_own_state(db):
    first, second = write(2)
    assert chain.check_entry(first.pk) is None  # not linked yet
    seal()
    assert chain.check_entry(first.pk) == []
    as_superuser("UPDATE audit_auditentry SET event = 'ticket.viewed' WHERE id = %s", [second.pk])
    assert [p.kind for p in chain.check_entry(second.pk)] == ["altered"]


def test_a_bad_option_is_a_usage_error(db):
    with pytest.raises(Exception, match="--max-unsealed-age must be 0 or more seconds"):
        call_command("audit_verify", "--no-progress", "--max-unsealed-age", "-1")


# --- GDPR erasure ---------------------------------------------------------------------------


def test_erasing_a_person_blanks_their_data_and_the_chain_still_verifies(
    admin_user, customer, agent
):
    with audit_context(actor=customer, ip="203.0.113.5", user_agent="Mobile Safari"):
        own = record("ticket.created", data={"subject": "my mailbox"})
    with audit_context(actor=agent):
        about = record("customer.viewed", target=customer, data={"email": customer.email})
        other = record("ticket.assigned", data={"to": "sam"})
    counts = services.erase_personal_data(actor=admin_user, user=customer)

    assert counts["identity_entries"] >= 1 and counts["subject_entries"] >= 1
    own.refresh_from_db()
    about.refresh_from_db()
    other.refresh_from_db()
    assert (own.actor_name, own.actor_email, own.remote_addr, own.user_agent) == ("", "", None, "")
    assert own.identity_erased_at is not None and own.additional_data == {"subject": "my mailbox"}
    assert (about.object_repr, about.additional_data, about.subject_erased_at is not None) == (
        "",
        None,
        True,
    )
    assert about.actor_name == "Sam Agent (sam)"  # the agent who looked is not erased
    assert other.identity_erased_at is None and other.subject_erased_at is None
    erasure = AuditEntry.objects.get(event="audit.personal_data_erased")
    assert erasure.additional_data["user_id"] == customer.pk and "carol" not in str(
        erasure.additional_data
    )
    seal()
    report = chain.verify()
    assert report.ok, report.summary()


def test_an_erased_entry_whose_fields_come_back_is_detected(customer, admin_user):
    with audit_context(actor=customer):
        entry = record("ticket.created")
    services.erase_personal_data(actor=admin_user, user=customer)
    as_superuser("UPDATE audit_auditentry SET actor_name = 'Mallory' WHERE id = %s", [entry.pk])
    report = chain.verify()
    assert report.problems[0].message.endswith(
        "is marked as erased, but its personal fields are not blank"
    )


def test_the_erase_mode_only_allows_blanking(db, customer):
    with audit_context(actor=customer):
        entry = record("ticket.created")
    seal()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('audit.mode', 'erase', true)")
        for sql in (
            "UPDATE audit_auditentry SET actor_name = 'Someone' WHERE id = %s",
            "UPDATE audit_auditentry SET event = 'x.y' WHERE id = %s",
            "UPDATE audit_auditentry SET identity_erased_at = now() WHERE id = %s",  # not blanked
        ):
            with pytest.raises(IntegrityError, match="append-only"), transaction.atomic():
                cursor.execute(sql, [entry.pk])


def test_the_sealing_function_and_the_verifier_share_one_canonical_form(customer):
    """audit_seal (migrations 0004 and 0006) hashes entries itself; its digests must be exactly
    those of audit.chain, which verification recomputes."""
    with audit_context(actor=customer, ip="2001:db8::1", user_agent="tab\there \\ 'quote' ünïcode"):
        entry = record(
            "ticket.created",
            target=customer,
            changes={"a": [None, {"b": [1, 2.5]}]},
            data={"x": "\n"},
        )
    seal()
    link = ChainLink.objects.get(entry_id=entry.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {chain.IDENTITY_DIGEST_SQL}, {chain.SUBJECT_DIGEST_SQL} FROM audit_auditentry e WHERE e.id = %s",  # noqa: S608
            [entry.pk],
        )
        identity, subject = (bytes(value) for value in cursor.fetchone())
        cursor.execute(
            f"SELECT {chain.content_digest_sql('%s', '%s')} FROM audit_auditentry e WHERE e.id = %s",  # noqa: S608
            [identity, subject, entry.pk],
        )
        content = bytes(cursor.fetchone()[0])
    assert (bytes(link.identity_digest), bytes(link.subject_digest)) == (identity, subject)
    assert bytes(link.hash) == chain.link_hash(bytes(link.prev_hash), content)
