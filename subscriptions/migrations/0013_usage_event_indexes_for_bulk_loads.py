"""Fewer index and constraint checks per stored usage event (docs/PERFORMANCE.md, "Usage events").

- ``customer`` and ``metric``: no foreign key constraint (copies of what the item determines; PostgreSQL checked
  each one per row at commit); ``customer`` loses its own index (``usage_customer_metric_time_idx`` starts with it).
- ``subscription_item``: loses its own index (``usage_item_billing_date_idx`` starts with it), keeps its constraint.
  Django would drop and re-add the constraint (validating every stored row), so the index is dropped by name.
- ``transaction_id``: unique through a named constraint instead of ``unique=True``, whose PostgreSQL ``_like``
  index no query uses. The existing unique constraint is renamed, not rebuilt (cheap on a large table); the
  ``_like`` index — named after the table's former name, which Django's own operation would miss — is found by
  introspection and dropped. On SQLite (the demo) the database keeps its inline unique index: the same rule.
- ``transaction_id`` compares bytewise (``COLLATE "C"``) on PostgreSQL: the unique index is probed and extended
  by every stored event, and a locale's comparison cost a fifth of an insert's time (the same ids are equal
  under either rule, so uniqueness is unchanged). PostgreSQL only — SQLite has no "C" collation — so the model
  does not declare it (subscriptions.models.UsageEvent says so). Rebuilds the unique index once.
"""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "subscriptions_usageevent"
UNIQUE = "usage_event_transaction_id_unique"


def _constraints(schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, TABLE)


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, info in _constraints(schema_editor).items():
        if info["primary_key"] or info["foreign_key"] or name == UNIQUE:
            continue
        if info["columns"] == ["transaction_id"] and info["unique"]:
            schema_editor.execute(f'ALTER TABLE "{TABLE}" RENAME CONSTRAINT "{name}" TO "{UNIQUE}"')
        elif info["index"] and info["columns"] in (["transaction_id"], ["subscription_item_id"]):
            schema_editor.execute(f'DROP INDEX "{name}"')
    schema_editor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "transaction_id" TYPE varchar(200) COLLATE "C"')


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f'ALTER TABLE "{TABLE}" ALTER COLUMN "transaction_id" TYPE varchar(200) COLLATE "default"')
    schema_editor.execute(f'ALTER TABLE "{TABLE}" RENAME CONSTRAINT "{UNIQUE}" TO "{TABLE}_transaction_id_key"')
    schema_editor.execute(
        f'CREATE INDEX "{TABLE}_transaction_id_like" ON "{TABLE}" ("transaction_id" varchar_pattern_ops)'
    )
    schema_editor.execute(f'CREATE INDEX "{TABLE}_subscription_item_id" ON "{TABLE}" ("subscription_item_id")')


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0009_customer_einvoice_fields"),
        ("subscriptions", "0012_self_service_prices_and_cancellation_reason"),
    ]

    operations = [
        migrations.AlterField(
            model_name="usageevent",
            name="customer",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="customers.customer",
            ),
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="metric",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="subscriptions.billablemetric",
            ),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="usageevent",
                    name="subscription_item",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="usage_events",
                        to="subscriptions.subscriptionitem",
                    ),
                ),
                migrations.AlterField(
                    model_name="usageevent",
                    name="transaction_id",
                    field=models.CharField(max_length=200),
                ),
                migrations.AddConstraint(
                    model_name="usageevent",
                    constraint=models.UniqueConstraint(fields=("transaction_id",), name=UNIQUE),
                ),
            ],
            database_operations=[migrations.RunPython(forwards, backwards)],
        ),
    ]
