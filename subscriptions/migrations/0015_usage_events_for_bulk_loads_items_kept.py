"""Less database work per stored usage event, for bulk loads (docs/decisions/usage-events.md, "Storage for bulk
loads"; docs/PERFORMANCE.md, "Usage events"). Per 100,000 events COPY'd, as CPU seconds of the PostgreSQL backend
on the loaded 2-core machine:

- ``usage_customer_metric_time_idx`` dropped (≈ 0.35 s): no query read it — a customer's current usage goes
  through the customer's items and ``usage_item_billing_date_idx``.
- ``subscription_item``: no database foreign key (≈ 0.45 s: PostgreSQL checked it per row at commit). Items are
  never deleted — a removed item keeps its row — and now the database refuses deleting one (trigger
  ``item_rows_are_kept``), so no event can lose its item.
- ``metric``: no index of its own (≈ 0.15 s); no query reads events by metric alone.
"""

import django.db.models.deletion
import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0014_commitments_progressive_billing"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="usageevent",
            name="usage_customer_metric_time_idx",
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="metric",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="subscriptions.billablemetric",
            ),
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="subscription_item",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="subscriptions.subscriptionitem",
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="subscriptionitem",
            trigger=pgtrigger.compiler.Trigger(
                name="item_rows_are_kept",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="RAISE EXCEPTION 'pgtrigger: Cannot delete rows from % table', TG_TABLE_NAME;",
                    hash="0463f5512c2e1b681269ffaa69a7bb558ce2b719",
                    operation="DELETE",
                    pgid="pgtrigger_item_rows_are_kept_69738",
                    table="subscriptions_subscriptionitem",
                    when="BEFORE",
                ),
            ),
        ),
    ]
