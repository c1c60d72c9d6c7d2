import pytest
from django.urls import reverse

from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


def test_dashboard_figures_are_computed_once_a_minute_then_served_in_a_few_queries(
    admin_client, django_assert_max_num_queries, settings
):
    settings.DASHBOARD_CACHE_SECONDS = 60
    CustomerFactory.create_batch(3)
    first = admin_client.get(reverse("admin:index"))
    assert first.status_code == 200 and b"billing-dashboard" in first.content
    with django_assert_max_num_queries(6):
        second = admin_client.get(reverse("admin:index"))
    assert b"billing-dashboard" in second.content
    assert b"refreshed every minute" in second.content


def test_cached_dashboard_for_staff_with_a_role_stays_within_six_queries(client, django_assert_max_num_queries):
    from tests.factories import StaffUserFactory

    client.force_login(StaffUserFactory(group="Auditor (read-only)"))
    CustomerFactory.create_batch(3)
    assert b"billing-dashboard" in client.get(reverse("admin:index")).content
    # session, user, the user's and the groups' permissions, recent actions
    with django_assert_max_num_queries(6):
        second = client.get(reverse("admin:index"))
    assert b"billing-dashboard" in second.content


def test_staff_who_may_fill_in_the_seller_profile_are_alerted_when_it_has_no_country(admin_client, client, settings):
    """A new installation's empty seller profile holds every taxed invoice for review (invoicing.taxes): the
    dashboard's operations list says so, with the way to fix it, to staff who may change the profile."""
    from customers.models import SellerProfile
    from tests.factories import StaffUserFactory

    settings.DASHBOARD_CACHE_SECONDS = 0
    alert = b"every taxed invoice is held for review until it is filled in"
    assert alert not in admin_client.get(reverse("admin:index")).content
    SellerProfile.objects.update(country="")
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert alert.decode() in page and "no country" in page
    assert f'href="{reverse("admin:customers_sellerprofile_changelist")}"' in page
    client.force_login(StaffUserFactory(group="Auditor (read-only)"))  # sees the dashboard, may not change it
    assert b"billing-dashboard" in (auditor := client.get(reverse("admin:index")).content)
    assert alert not in auditor
