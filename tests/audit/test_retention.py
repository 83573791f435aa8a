"""Retention: archives past AUDIT_RETENTION_DAYS, the purge through the sanctioned path, archive
verification on its own, the legal hold and the dry run."""

from __future__ import annotations

import gzip
import io
import json
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from audit import archive, chain, services
from audit.context import SYSTEM, audit_context
from audit.models import AuditCheckpoint, AuditEntry, ChainLink
from audit.services import record
from audit.tasks import archive_expired
from tests.audit.conftest import seal
from tests.factories import CustomerFactory

DAY = timedelta(days=1)


@pytest.fixture
def aged_chain(db, archive_dir):
    """Entries written now, and newer ones a year later; the clock then stands 200 days past
    the first ones' retention, so exactly the first ones (and everything before them in the
    chain) are due. Values that are hard to encode go into the chain's canonical form."""
    now = timezone.now()
    customer = CustomerFactory(
        username="zoe",
        first_name="Zoë 👩‍💻",
        last_name='O\'Brien "the" \\ one',
        email="zoe@example.com",
    )
    with audit_context(
        actor=customer, ip="2001:db8::7", user_agent='Agent "quoted"\nnext\\line', request_id="r-1"
    ):
        old = [
            record(
                "ticket.created",
                target=customer,
                changes={"status": [None, "new"], "tags": [[], ["ä", "b"]]},
                data={"n": 1, "nested": {"x": [1.5, True, None, "\t"]}, "text": "line\nbreak"},
            ),  # fmt: skip
            record("customer.viewed", target=customer, data={"what": "panel"}),
        ]
    seal()
    with time_machine.travel(now + 365 * DAY, tick=False):
        recent = [record("ticket.updated", data={"n": n}) for n in range(3)]
        seal()
    traveller = time_machine.travel(now + (2557 + 200) * DAY, tick=False)
    traveller.start()
    yield {"old": old, "recent": recent, "archive_dir": archive_dir}
    traveller.stop()


def test_the_dry_run_says_what_would_go(aged_chain):
    out = io.StringIO()
    call_command("audit_archive", "--dry-run", stdout=out)
    last_old = ChainLink.objects.get(entry_id=aged_chain["old"][-1].pk).seq
    assert f"audit entries (seq 1–{last_old}," in out.getvalue()
    assert (
        "are older than the retention cutoff" in out.getvalue() and "(2557 days)" in out.getvalue()
    )
    assert "would be archived" in out.getvalue()
    assert AuditEntry.objects.filter(pk=aged_chain["old"][0].pk).exists()
    assert not aged_chain["archive_dir"].exists() or not any(aged_chain["archive_dir"].iterdir())


def test_archive_then_purge_leaves_a_verifiable_archive_and_chain(aged_chain):
    plan = services.retention_plan()
    out = io.StringIO()
    call_command("audit_archive", "--yes", "--no-progress", stdout=out)

    assert f"Archived and purged {plan.count} entries" in out.getvalue()
    assert not AuditEntry.objects.filter(pk__in=[e.pk for e in aged_chain["old"]]).exists()
    assert AuditEntry.objects.filter(pk__in=[e.pk for e in aged_chain["recent"]]).count() == 3
    assert ChainLink.objects.order_by("seq").first().seq == plan.last_seq + 1
    purge = AuditCheckpoint.objects.get(kind="purge")
    assert (purge.seq, purge.archive_name) == (
        plan.last_seq,
        archive.archive_name(plan.first_seq, plan.last_seq),
    )
    purged = AuditEntry.objects.get(event="audit.purged")
    assert purged.additional_data["entries"] == plan.count and purged.actor_name == "system"

    # The chain still verifies: it now starts where the purge checkpoint says.
    seal()
    report = chain.verify()
    assert report.ok, report.summary()

    # The archive verifies on its own, against the Python rebuild of every digest.
    path = aged_chain["archive_dir"] / purge.archive_name
    out = io.StringIO()
    call_command("audit_verify", "--archive", str(path), "--no-progress", stdout=out)
    assert (
        f"Archive {path.name} intact: {plan.count} entries verified (seq 1–{plan.last_seq})"
        in out.getvalue()
    )
    with gzip.open(path) as handle:
        lines = [json.loads(line) for line in handle]
    zoe = next(line for line in lines[1:-1] if line["id"] == aged_chain["old"][0].pk)
    assert zoe["identity"]["actor_name"] == 'Zoë 👩‍💻 O\'Brien "the" \\ one (zoe)'
    assert zoe["identity"]["ip"] == "2001:db8::7/128"
    assert json.loads(zoe["subject"]["data"]) == {
        "n": 1,
        "nested": {"x": [1.5, True, None, "\t"]},
        "text": "line\nbreak",
    }
    assert archive.file_sha256(path) == purge.archive_sha256


def _rewrite(path, change):
    with gzip.open(path) as handle:
        lines = change([json.loads(line) for line in handle])
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")


def _verify_archive(path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(
            "audit_verify", "--archive", str(path), "--no-progress", stdout=out, stderr=err
        )
    except SystemExit as exit_:
        return exit_.code, err.getvalue()
    return 0, out.getvalue()


@pytest.fixture
def archived(aged_chain):
    services.archive_and_purge()
    return aged_chain["archive_dir"] / AuditCheckpoint.objects.get(kind="purge").archive_name


def test_an_altered_archive_names_the_entry(archived):
    first_id = {}

    def alter(lines):
        first_id["id"] = lines[1]["id"]
        lines[1]["subject"]["target_text"] = "someone else"
        return lines

    _rewrite(archived, alter)
    code, err = _verify_archive(archived)
    assert code == 1
    assert (
        f"entry {first_id['id']} (seq 1) was altered: its subject fields do not match their digest"
        in err
    )


def test_an_archive_missing_an_entry_is_detected(archived):
    _rewrite(archived, lambda lines: lines[:2] + lines[3:])
    code, err = _verify_archive(archived)
    assert code == 1
    assert "seq 2 is missing" in err


def test_a_regenerated_archive_fails_its_signature(archived):
    def regenerate(lines):
        lines[-1]["signature"] = "0" * 64
        return lines

    _rewrite(archived, regenerate)
    code, err = _verify_archive(archived)
    assert code == 1 and "the footer signature is invalid" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        (b"not gzip at all", "not a complete gzip file"),
        (gzip.compress(b'{"hello": 1}\n'), "not an audit archive"),
        (gzip.compress(b"{broken\n"), "line 1 is not valid JSON"),
        (gzip.compress(b""), "the file is empty"),
    ],
    # gzip output embeds the time: name the cases so every xdist worker collects the same ids.
    ids=["missing", "not-gzip", "not-an-archive", "invalid-json", "empty"],
)
def test_unusable_archive_files_are_a_clear_usage_error(tmp_path, db, content, message):
    path = tmp_path / "given.jsonl.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CommandError, match=message) as caught:
        call_command("audit_verify", "--archive", str(path), "--no-progress")
    assert caught.value.returncode == 2


def test_a_cut_short_archive_is_detected(archived):
    data = gzip.decompress(archived.read_bytes()).splitlines(keepends=True)
    archived.write_bytes(gzip.compress(b"".join(data[:-1])))
    code, err = _verify_archive(archived)
    assert code == 1 and "the footer is missing" in err


def test_a_legal_hold_stops_the_purge(aged_chain, settings):
    settings.AUDIT_LEGAL_HOLD = True
    out = io.StringIO()
    call_command("audit_archive", "--yes", stdout=out)
    assert "A legal hold is in force (AUDIT_LEGAL_HOLD): nothing will be purged." in out.getvalue()
    result = services.archive_and_purge()
    assert result.purged == 0 and result.plan.legal_hold
    assert AuditEntry.objects.filter(pk=aged_chain["old"][0].pk).exists()
    assert not AuditCheckpoint.objects.filter(kind="purge").exists()


def test_without_yes_and_without_a_terminal_it_refuses(aged_chain, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(CommandError, match="pass --yes"):
        call_command("audit_archive", stdout=io.StringIO())
    assert AuditEntry.objects.filter(pk=aged_chain["old"][0].pk).exists()


def test_nothing_due_says_so(db, archive_dir):
    out = io.StringIO()
    call_command("audit_archive", "--yes", stdout=out)
    assert "No audit entries are older than the retention cutoff" in out.getvalue()


def test_the_daily_task_records_the_purge_as_the_system_task(aged_chain):
    result = archive_expired.apply()
    assert result.successful(), result.traceback
    assert result.result["purged"] > 0
    purged = AuditEntry.objects.get(event="audit.purged")
    assert (purged.actor_id, purged.actor_name) == (None, SYSTEM)
    assert purged.source == "task:audit.archive_expired"
    assert purged.cid == result.id
