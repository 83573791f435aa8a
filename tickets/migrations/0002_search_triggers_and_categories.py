"""Full-text search kept by PostgreSQL, and the seeded categories.

A ticket's ``search_vector`` covers its subject (weight A), description (B) and every comment
body, public and internal (C). Staff search it; customers never do, so internal notes in the
vector cannot leak. Triggers keep it current however rows change (services, admin, SQL):

* a row trigger on tickets rebuilds it when the subject or description changes;
* a statement trigger on comment INSERT appends the new bodies' vectors (cheap: no re-read of
  the thread), skipping once a vector nears PostgreSQL's 1 MB tsvector limit;
* statement triggers on comment UPDATE/DELETE (edits, merges moving comments, deletes) rebuild
  the affected tickets once each.

The bulk loader (tickets/seed.py) disables these triggers and computes vectors itself.
"""

from django.db import migrations

SEARCH_CONFIG = "english"

FORWARD = f"""
CREATE FUNCTION tickets_search_document(p_subject text, p_description text, p_ticket_id bigint)
RETURNS tsvector LANGUAGE sql STABLE AS $$
    -- Each part is capped so the sum stays under the 1 MB tsvector limit even for 4-byte
    -- characters; very long threads are indexed up to the cap on a rebuild.
    SELECT setweight(to_tsvector('{SEARCH_CONFIG}', left(coalesce(p_subject, ''), 1000)), 'A')
        || setweight(to_tsvector('{SEARCH_CONFIG}', left(coalesce(p_description, ''), 60000)), 'B')
        || setweight(to_tsvector('{SEARCH_CONFIG}', coalesce(
               (SELECT left(string_agg(c.body, ' ' ORDER BY c.id), 180000)
                  FROM tickets_comment c WHERE c.ticket_id = p_ticket_id), '')), 'C')
$$;

-- An upper bound of a vector's size as PostgreSQL counts it against the 1 MB limit (lexemes
-- plus positions): the text form spends at least as many bytes on each as the internal one.
CREATE FUNCTION tickets_tsvector_bytes(v tsvector) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(octet_length(v::text), 0)
$$;

CREATE FUNCTION tickets_ticket_search_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.subject IS DISTINCT FROM OLD.subject
       OR NEW.description IS DISTINCT FROM OLD.description THEN
        NEW.search_vector := tickets_search_document(NEW.subject, NEW.description, NEW.id);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER tickets_ticket_search
    BEFORE INSERT OR UPDATE OF subject, description ON tickets_ticket
    FOR EACH ROW EXECUTE FUNCTION tickets_ticket_search_trigger();

CREATE FUNCTION tickets_comment_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tickets_ticket t
       SET search_vector = coalesce(t.search_vector, ''::tsvector) || n.doc
      FROM (SELECT ticket_id,
                   setweight(to_tsvector('{SEARCH_CONFIG}',
                       left(string_agg(body, ' ' ORDER BY id), 180000)), 'C') AS doc
              FROM new_comments GROUP BY ticket_id) n
     WHERE t.id = n.ticket_id
       -- 1 MB (1048575 bytes) of lexemes and positions is PostgreSQL's limit for one tsvector.
       AND tickets_tsvector_bytes(t.search_vector) + tickets_tsvector_bytes(n.doc) < 1000000;
    RETURN NULL;
END $$;

CREATE TRIGGER tickets_comment_inserted
    AFTER INSERT ON tickets_comment REFERENCING NEW TABLE AS new_comments
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_comment_inserted();

CREATE FUNCTION tickets_comment_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE tickets_ticket t
           SET search_vector = tickets_search_document(t.subject, t.description, t.id)
         WHERE t.id IN (SELECT ticket_id FROM old_comments);
    ELSE
        UPDATE tickets_ticket t
           SET search_vector = tickets_search_document(t.subject, t.description, t.id)
         WHERE t.id IN (
                SELECT unnest(ARRAY[o.ticket_id, n.ticket_id])
                  FROM old_comments o JOIN new_comments n ON n.id = o.id
                 WHERE o.ticket_id IS DISTINCT FROM n.ticket_id OR o.body IS DISTINCT FROM n.body);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER tickets_comment_updated
    AFTER UPDATE ON tickets_comment
    REFERENCING OLD TABLE AS old_comments NEW TABLE AS new_comments
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_comment_changed();

CREATE TRIGGER tickets_comment_deleted
    AFTER DELETE ON tickets_comment REFERENCING OLD TABLE AS old_comments
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_comment_changed();
"""

REVERSE = """
DROP TRIGGER IF EXISTS tickets_comment_deleted ON tickets_comment;
DROP TRIGGER IF EXISTS tickets_comment_updated ON tickets_comment;
DROP TRIGGER IF EXISTS tickets_comment_inserted ON tickets_comment;
DROP TRIGGER IF EXISTS tickets_ticket_search ON tickets_ticket;
DROP FUNCTION IF EXISTS tickets_comment_changed();
DROP FUNCTION IF EXISTS tickets_comment_inserted();
DROP FUNCTION IF EXISTS tickets_ticket_search_trigger();
DROP FUNCTION IF EXISTS tickets_tsvector_bytes(tsvector);
DROP FUNCTION IF EXISTS tickets_search_document(text, text, bigint);
"""

CATEGORIES = [
    ("email_sync", "Email sync", "Mailboxes not syncing, IMAP/OAuth connection problems."),
    ("billing", "Billing", "Invoices, payments, refunds and plan changes."),
    ("account", "Account", "Sign-in, users, permissions and account settings."),
    ("bug", "Bug", "Something in the product does not work as it should."),
    ("feature_request", "Feature request", "Ideas and requests for new functionality."),
    ("other", "Other", "Anything else."),
]


def seed_categories(apps, schema_editor):
    Category = apps.get_model("tickets", "Category")
    for position, (slug, name, description) in enumerate(CATEGORIES, start=1):
        Category.objects.get_or_create(
            slug=slug, defaults={"name": name, "description": description, "position": position * 10}
        )


def unseed_categories(apps, schema_editor):
    Category = apps.get_model("tickets", "Category")
    Category.objects.filter(slug__in=[slug for slug, _, _ in CATEGORIES], tickets__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("tickets", "0001_initial")]

    operations = [
        migrations.RunSQL(FORWARD, reverse_sql=REVERSE),
        migrations.RunPython(seed_categories, unseed_categories),
    ]
