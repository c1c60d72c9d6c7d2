import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from customers.models import Customer

pytestmark = pytest.mark.django_db


def test_seed_demo_is_realistic_and_idempotent():
    call_command("seed_demo", stdout=None)
    customers = list(Customer.objects.all())
    assert len(customers) >= 50
    assert len({str(c.country) for c in customers}) >= 3
    assert len({c.currency for c in customers}) >= 3
    names = " ".join(c.name for c in customers)
    assert "ü" in names and "ł" in names  # accents
    assert any("\u0370" <= ch <= "\u03ff" for ch in names)  # Greek
    assert any("\u0400" <= ch <= "\u04ff" for ch in names)  # Cyrillic
    assert any("\u3040" <= ch <= "\u30ff" or "\u4e00" <= ch <= "\u9fff" for ch in names)  # Japanese
    snapshot = sorted(Customer.objects.values_list("external_id", "name", "updated_at"))
    call_command("seed_demo", stdout=None)
    assert sorted(Customer.objects.values_list("external_id", "name", "updated_at")) == snapshot


def test_demo_staff_credentials_log_in():
    call_command("seed_demo", stdout=None)
    for username in ("admin", "clerk", "finance", "auditor"):
        user = authenticate(username=username, password=username)
        assert user is not None and user.is_staff
