"""Billing dates are calendar dates in ``BILLING_TIMEZONE``; every job takes an explicit ``as_of`` date (parsed by
``core.asof``)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from django.conf import settings
from django.utils import timezone


def billing_tz() -> ZoneInfo:
    return ZoneInfo(settings.BILLING_TIMEZONE)


def billing_today() -> dt.date:
    """Today's date where the business bills, not in UTC: 23:30 UTC on the 31st is already the 1st in Berlin."""
    return timezone.now().astimezone(billing_tz()).date()


def billing_date_of(moment: dt.datetime) -> dt.date:
    return moment.astimezone(billing_tz()).date()
