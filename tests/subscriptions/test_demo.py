import pytest

from billing_project.demo.customers import seed_customers
from subscriptions.demo import seed_catalog_and_subscriptions
from subscriptions.models import Price, Subscription, UsageEvent

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_seed_creates_every_status_and_currency_and_is_idempotent():
    seed_customers()
    assert seed_catalog_and_subscriptions() == 60
    assert set(Subscription.objects.values_list("status", flat=True)) == {
        "trialing", "active", "past_due", "paused", "canceled", "ended"
    }  # fmt: skip
    assert {"EUR", "USD", "GBP", "PLN", "JPY"} <= set(Price.objects.values_list("unit_amount_currency", flat=True))
    assert UsageEvent.objects.exists()
    assert UsageEvent.objects.filter(metric__code="active-users", properties__has_key="user").exists()
    counts = (Subscription.objects.count(), Price.objects.count(), UsageEvent.objects.count())
    assert seed_catalog_and_subscriptions() == 0
    assert (Subscription.objects.count(), Price.objects.count(), UsageEvent.objects.count()) == counts
