"""The raw points table, range-partitioned by day, with a BRIN index on time.

Points arrive in time order, so a BRIN index stays a few pages big and keeps COPY fast (a btree
on (name, time) cut COPY speed threefold); charts read the rollups, not this table. Partitions
for yesterday to three days ahead are made here; monitoring.storage.maintain_partitions keeps
them ahead and drops those past the raw retention (a daily task and ``metrics_partitions``).
"""

from django.db import migrations

CREATE = """
CREATE TABLE monitoring_points (
    time timestamptz NOT NULL,
    name text NOT NULL,
    value double precision NOT NULL,
    tags jsonb
) PARTITION BY RANGE (time);
CREATE INDEX monitoring_points_time_brin ON monitoring_points USING brin (time)
    WITH (pages_per_range = 32);
DO $$
DECLARE d date;
BEGIN
    FOR d IN SELECT generate_series(current_date - 1, current_date + 3, interval '1 day')::date LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF monitoring_points FOR VALUES FROM (%L) TO (%L)',
            'monitoring_points_p' || to_char(d, 'YYYYMMDD'),
            d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
    END LOOP;
END $$;
"""


class Migration(migrations.Migration):
    dependencies = [("monitoring", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, "DROP TABLE IF EXISTS monitoring_points CASCADE;")]
