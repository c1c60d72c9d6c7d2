"""Portal races on real PostgreSQL connections: the same single-use sign-in link POSTed by several browsers at
the same moment (threads behind a barrier, each request on its own connection, row locks for real)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.models import LoginToken
from customers.portal import SESSION_USER_KEY
from customers.portal_services import portal_login_request
from tests.factories import CustomerFactory
from tests.factories.portal import PortalUserFactory
from tests.reliability.concurrency import concurrently, raised

pytestmark = [pytest.mark.django_db(transaction=True)]

BROWSERS = 8


def _sign_in_once(url: str) -> tuple[int, Any]:
    client = Client()
    response = client.post(url)
    return response.status_code, client.session.get(SESSION_USER_KEY)


def test_one_sign_in_link_posted_by_many_browsers_at_once_signs_in_exactly_one() -> None:
    portal_user = PortalUserFactory(customer=CustomerFactory(), email="race@portal.example")
    link = portal_login_request(email=portal_user.email, ip="127.0.0.1")
    assert link is not None
    url = reverse("portal:login_confirm", args=[link.token])

    results = concurrently(*[lambda: _sign_in_once(url) for _ in range(BROWSERS)])

    assert raised(results) == []
    signed_in = [result for result in results if result == (302, portal_user.pk)]
    refused = [result for result in results if result == (400, None)]
    assert (len(signed_in), len(refused)) == (1, BROWSERS - 1), results
    assert LoginToken.objects.get().used_at is not None


def test_a_link_of_a_deactivated_portal_user_signs_in_nobody_and_stays_unused() -> None:
    portal_user = PortalUserFactory(customer=CustomerFactory(), email="gone@portal.example")
    link = portal_login_request(email=portal_user.email, ip=None)
    assert link is not None
    type(portal_user).objects.filter(pk=portal_user.pk).update(is_active=False)

    assert _sign_in_once(reverse("portal:login_confirm", args=[link.token])) == (400, None)
    assert LoginToken.objects.get().used_at is None
    assert LoginToken.objects.get().expires_at > timezone.now() - dt.timedelta(minutes=1)
