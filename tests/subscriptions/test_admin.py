"""Admin: list pages with bounded queries, read-only status, actions through services, change-plan screen."""

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse
from djmoney.money import Money

from subscriptions.models import PendingInvoiceItem, SubscriptionEvent
from tests.factories.subscriptions import PriceFactory, SubscriptionFactory
from tests.subscriptions.conftest import bill

pytestmark = pytest.mark.django_db
D = dt.date


@pytest.mark.parametrize(
    "model",
    [
        "product",
        "price",
        "subscription",
        "coupon",
        "discount",
        "usageevent",
        "pendinginvoiceitem",
        "subscriptionevent",
    ],
)
def test_changelists_render_with_bounded_queries(admin_client, model, django_assert_max_num_queries):
    price = PriceFactory()
    for _ in range(5):
        SubscriptionFactory(price=price)
    with django_assert_max_num_queries(15):
        response = admin_client.get(reverse(f"admin:subscriptions_{model}_changelist"))
    assert response.status_code == 200


def test_subscription_status_is_read_only_and_actions_go_through_services(admin_client):
    subscription = SubscriptionFactory(start_date=D(2026, 3, 1))
    response = admin_client.get(reverse("admin:subscriptions_subscription_change", args=[subscription.pk]))
    assert response.status_code == 200
    assert b'name="status"' not in response.content
    assert b"Change items" in response.content
    with time_machine.travel(dt.datetime(2026, 3, 5, 12, tzinfo=dt.UTC)):
        response = admin_client.post(
            reverse("admin:subscriptions_subscription_changelist"),
            {"action": "pause", "_selected_action": [subscription.pk]},
            follow=True,
        )
    assert response.status_code == 200
    subscription.refresh_from_db()
    assert subscription.status == "paused"
    event = SubscriptionEvent.objects.filter(subscription=subscription).order_by("pk").last()
    assert (event.from_status, event.to_status, event.actor.username) == ("active", "paused", "admin")


def test_change_plan_screen_previews_then_applies(admin_client):
    price = PriceFactory(per_unit=True, unit_amount=Money("29.99", "EUR"), product__name="Pro")
    subscription = SubscriptionFactory(price=price, quantity=5, start_date=D(2026, 3, 1))
    bill(subscription, D(2026, 3, 1))
    url = reverse("admin:subscriptions_subscription_change_plan", args=[subscription.pk])
    data = {
        "items-TOTAL_FORMS": "1",
        "items-INITIAL_FORMS": "1",
        "items-0-price": price.pk,
        "items-0-quantity": "8",
        "as_of": "2026-03-14",
        "proration_behavior": "create_prorations",
        "_preview": "Preview",
    }
    response = admin_client.post(url, data)
    assert response.status_code == 200
    content = response.content.decode()
    assert "Unused time on Pro × 5 from 14 Mar 2026 (18/31 days)" in content
    assert "€52.24" in content  # -87.07 + 139.31
    assert not PendingInvoiceItem.objects.exists()
    data.pop("_preview")
    response = admin_client.post(
        url, {**data, "_apply": "Apply this change", "preview_of": response.context["preview_of"]}
    )
    assert response.status_code == 302
    assert sorted(PendingInvoiceItem.objects.values_list("amount", flat=True)) == [Decimal("-87.07"), Decimal("139.31")]
    assert subscription.items.get().quantity == 8
