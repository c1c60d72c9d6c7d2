"""Usage events and billable metrics (issue 22, docs/decisions/usage-events.md).

The usage record table becomes the usage event table (renamed, its rows kept): the idempotency key is the
transaction id, the quantity the value, and each row gains its customer, its metric and properties. A metered
price's aggregation becomes a billable metric: prices that aggregated by max or last now name a metric
(``quantity-max`` / ``quantity-latest`` over the property ``quantity``); sum, the default, needs none (a metered
price without a metric bills the sum of its items' values). The audit trail's triggers follow in 0009.
"""

from decimal import Decimal

import django.db.models.deletion
import pgtrigger.migrations
from django.db import migrations, models


def metrics_from_aggregations(apps, schema_editor):
    Price = apps.get_model("subscriptions", "Price")
    BillableMetric = apps.get_model("subscriptions", "BillableMetric")
    for aggregation, aggregation_now in (("max", "max"), ("last", "latest")):
        prices = Price.objects.filter(usage_type="metered", aggregation=aggregation)
        if not prices.exists():
            continue
        metric, _ = BillableMetric.objects.get_or_create(
            code=f"quantity-{aggregation_now}",
            defaults={
                "name": f"Quantity ({aggregation_now})",
                "aggregation": aggregation_now,
                "field_name": "quantity",
            },
        )
        prices.update(metric=metric)


def events_from_records(apps, schema_editor):
    UsageEvent = apps.get_model("subscriptions", "UsageEvent")
    SubscriptionItem = apps.get_model("subscriptions", "SubscriptionItem")
    items = SubscriptionItem.objects.filter(pk__in=UsageEvent.objects.values("subscription_item_id"))
    for item in items.select_related("subscription", "price"):
        events = UsageEvent.objects.filter(subscription_item_id=item.pk)
        events.update(customer_id=item.subscription.customer_id, metric_id=item.price.metric_id)
        if item.price.metric_id is not None:
            for event in events.only("pk", "value"):
                UsageEvent.objects.filter(pk=event.pk).update(properties={"quantity": str(event.value)})


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0001_initial"),
        ("subscriptions", "0007_package_price_needs_its_size"),
    ]

    operations = [
        migrations.CreateModel(
            name="BillableMetric",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "code",
                    models.SlugField(help_text="What events name in their 'code'.", max_length=100, unique=True),
                ),
                ("name", models.CharField(max_length=200)),
                (
                    "aggregation",
                    models.CharField(
                        choices=[
                            ("sum", "Sum of a property"),
                            ("count", "Number of events"),
                            ("max", "Maximum of a property"),
                            ("unique_count", "Number of distinct values of a property"),
                            ("latest", "Latest value of a property"),
                        ],
                        default="sum",
                        max_length=12,
                    ),
                ),
                (
                    "field_name",
                    models.CharField(
                        blank=True,
                        help_text="The event property aggregated (a number for sum, max and latest). Empty for count.",
                        max_length=100,
                        verbose_name="property",
                    ),
                ),
                (
                    "filters",
                    models.JSONField(
                        blank=True,
                        default=dict,
                        help_text='Only events whose properties match, e.g. {"region": ["eu", "us"]}. Empty: every '
                        "event.",
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["code"],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("aggregation__in", ["sum", "count", "max", "unique_count", "latest"])),
                        name="metric_aggregation_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("aggregation", "count"), ("field_name", "")),
                            models.Q(
                                models.Q(("aggregation", "count"), _negated=True),
                                ("field_name__regex", "^[A-Za-z_][A-Za-z0-9_.-]{0,99}$"),
                            ),
                            _connector="OR",
                        ),
                        name="metric_property_iff_not_count",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("code__regex", "^[-a-zA-Z0-9_]+$")), name="metric_code_slug"
                    ),
                ],
            },
        ),
        migrations.AddField(
            model_name="price",
            name="metric",
            field=models.ForeignKey(
                blank=True,
                help_text="Metered prices: the billable metric billed. Empty: the sum of the items' usage quantities.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="prices",
                to="subscriptions.billablemetric",
            ),
        ),
        # The price audit triggers name the aggregation column: dropped before it, re-created in 0007.
        pgtrigger.migrations.RemoveTrigger(
            model_name="price",
            name="insert_insert",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="price",
            name="update_update",
        ),
        pgtrigger.migrations.RemoveTrigger(
            model_name="price",
            name="delete_delete",
        ),
        migrations.RunPython(metrics_from_aggregations, migrations.RunPython.noop),
        migrations.RemoveConstraint(model_name="price", name="price_aggregation_valid"),
        migrations.RemoveField(model_name="price", name="aggregation"),
        migrations.AddConstraint(
            model_name="price",
            constraint=models.CheckConstraint(
                condition=models.Q(("metric__isnull", True), ("usage_type", "metered"), _connector="OR"),
                name="price_metric_only_metered",
            ),
        ),
        # Usage records become usage events (same table rows, renamed).
        migrations.RenameModel(old_name="UsageRecord", new_name="UsageEvent"),
        migrations.RenameField(model_name="usageevent", old_name="idempotency_key", new_name="transaction_id"),
        migrations.RenameField(model_name="usageevent", old_name="quantity", new_name="value"),
        migrations.RemoveConstraint(model_name="usageevent", name="usage_quantity_non_negative"),
        migrations.AlterField(
            model_name="usageevent",
            name="value",
            field=models.DecimalField(decimal_places=6, default=Decimal("0"), max_digits=19),
        ),
        migrations.AddConstraint(
            model_name="usageevent",
            constraint=models.CheckConstraint(condition=models.Q(("value__gte", 0)), name="usage_value_non_negative"),
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="subscription_item",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="subscriptions.subscriptionitem",
            ),
        ),
        migrations.AddField(
            model_name="usageevent",
            name="customer",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="customers.customer",
            ),
        ),
        migrations.AddField(
            model_name="usageevent",
            name="metric",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="subscriptions.billablemetric",
            ),
        ),
        migrations.AddField(
            model_name="usageevent",
            name="properties",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(events_from_records, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="usageevent",
            name="customer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="customers.customer",
            ),
        ),
        migrations.RemoveIndex(model_name="usageevent", name="usage_item_billing_date_idx"),
        migrations.AddIndex(
            model_name="usageevent",
            index=models.Index(
                fields=["subscription_item", "billing_date"],
                include=("usage_date", "value"),
                name="usage_item_billing_date_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="usageevent",
            index=models.Index(
                fields=["customer", "metric", "timestamp"],
                include=("value",),
                name="usage_customer_metric_time_idx",
            ),
        ),
    ]
