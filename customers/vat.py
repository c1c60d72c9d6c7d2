"""The VAT number check against the EU's VIES (docs/decisions/vat-validation.md).

The format and check digits are validated offline when a customer is saved (``normalize_tax_id``, python-stdnum).
Whether the number is *registered* is asked of VIES afterwards, asynchronously: a change of the number queues a
check (``vat_check_queue``) that a Celery task performs (``vat_check_perform``), retried with backoff while VIES or
the member state's service is down, and again by the daily "VAT number checks" job. Issuing never waits for it.

Each answer is kept as a ``VatCheck`` row — valid or invalid, VIES's date and, when the seller's own VAT number is
configured (the requester), VIES's consultation number: the evidence a tax audit asks for. The customer's
``vat_status`` follows the latest answer for its current number; the tax resolution applies the rule for an
invalid number (``invoicing.taxes.resolve_tax``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from celery import signature
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.db.models.signals import post_save, pre_save
from django.urls import reverse
from django.utils import timezone

from core.alerts import Alert
from customers.models import EU_VAT_COUNTRIES, Customer, VatCheck, VatCheckStatus, VatStatus

logger = logging.getLogger(__name__)

# VIES's answers that mean "ask again later" (the member state's service or VIES itself is busy or down).
UNAVAILABLE_ERRORS = frozenset(
    {
        "MS_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
        "TIMEOUT",
        "MS_MAX_CONCURRENT_REQ",
        "GLOBAL_MAX_CONCURRENT_REQ",
        "SERVER_BUSY",
        "IP_BLOCKED",
    }
)
# VIES refuses to answer a requester whose own number it does not know: asked again without the requester (no
# consultation number then, but an answer).
REQUESTER_ERRORS = frozenset({"INVALID_REQUESTER_INFO"})


class ViesUnavailable(Exception):
    """VIES or the member state's service did not answer: try again later."""


@dataclass(frozen=True)
class ViesAnswer:
    valid: bool
    request_date: dt.date | None
    consultation_number: str
    name: str
    address: str


def vies_parts(vat_number: str) -> tuple[str, str]:
    """(VIES country code, number without it) of a compact EU VAT number: ``DE123456789`` → ("DE", "123456789").
    Greece is ``EL`` in VIES, as in its VAT numbers."""
    return vat_number[:2].upper(), vat_number[2:]


def is_eu_vat_number(vat_number: str) -> bool:
    prefix = vat_number[:2].upper()
    return prefix == "EL" or prefix in EU_VAT_COUNTRIES


def _clean(value: Any) -> str:
    text = str(value or "").strip()
    return "" if text in {"---", "N/A"} else text


def vies_ask(vat_number: str, *, requester: str = "") -> ViesAnswer:
    """Ask VIES's REST service (``VIES_URL``) whether ``vat_number`` is registered. Raises ``ViesUnavailable``
    when it cannot say (network, timeouts, a member state down, a server error)."""
    country, number = vies_parts(vat_number)
    body: dict[str, str] = {"countryCode": country, "vatNumber": number}
    if requester:
        body["requesterMemberStateCode"], body["requesterNumber"] = vies_parts(requester)
    request = urllib.request.Request(  # noqa: S310 - VIES_URL is an https URL from the settings
        settings.VIES_URL,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.VIES_TIMEOUT_SECONDS) as response:  # noqa: S310
            payload = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        try:
            payload = json.loads(exc.read().decode("utf-8"))
        except (ValueError, OSError):
            raise ViesUnavailable(f"VIES answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ViesUnavailable(f"VIES could not be reached: {exc}") from exc
    if not isinstance(payload, dict):
        raise ViesUnavailable("VIES answered something that is not a JSON object")
    errors = [str(e.get("error", "")) for e in payload.get("errorWrappers") or [] if isinstance(e, dict)]
    user_error = str(payload.get("userError") or "")
    codes = set(errors) | ({user_error} if user_error else set())
    if requester and codes & REQUESTER_ERRORS:
        logger.warning("VIES refused the requester %s; asking without it", requester)
        return vies_ask(vat_number)
    if codes & UNAVAILABLE_ERRORS or (payload.get("actionSucceed") is False and "INVALID_INPUT" not in codes):
        raise ViesUnavailable(f"VIES: {', '.join(sorted(codes)) or 'no answer'}")
    if "valid" not in payload and "INVALID_INPUT" not in codes:
        raise ViesUnavailable("VIES answered without a verdict")
    request_date = None
    raw_date = str(payload.get("requestDate") or "")[:10]
    if raw_date:
        try:
            request_date = dt.date.fromisoformat(raw_date)
        except ValueError:
            request_date = None
    return ViesAnswer(
        valid=bool(payload.get("valid")) and "INVALID_INPUT" not in codes,
        request_date=request_date,
        consultation_number=_clean(payload.get("requestIdentifier")),
        name=_clean(payload.get("name") or payload.get("traderName")),
        address=_clean(payload.get("address") or payload.get("traderAddress")),
    )


# --- Services ---------------------------------------------------------------------------------------------


def vat_status_for_number(customer: Customer) -> str:
    """The status a customer's (new) number starts with: unchecked when VIES can check it."""
    if not customer.tax_id:
        return VatStatus.UNCHECKED
    if str(customer.country).upper() not in EU_VAT_COUNTRIES or not is_eu_vat_number(customer.tax_id):
        return VatStatus.NOT_APPLICABLE
    return VatStatus.UNCHECKED


def vat_check_queue(*, customer: Customer) -> VatCheck | None:
    """Record a pending check of the customer's current number and queue it after commit; None when there is
    nothing VIES can check (no number, not an EU number)."""
    if vat_status_for_number(customer) != VatStatus.UNCHECKED:
        return None
    check = VatCheck.objects.create(customer=customer, vat_number=customer.tax_id)
    # by name: the task module imports this one (customers.tasks → customers.vat)
    transaction.on_commit(lambda: signature("customers.check_vat_number", args=(check.pk,)).delay())
    return check


def _requester() -> str:
    from customers.seller import seller_profile

    requester = settings.VIES_REQUESTER_VAT_ID or seller_profile().vat_id or ""
    return requester if requester and is_eu_vat_number(requester) else ""


def vat_check_perform(*, check_id: int) -> VatCheck:
    """Ask VIES for a pending (or unavailable) check and store its answer on the check and, when the number is
    still the customer's, on the customer. Raises ``ViesUnavailable`` (after recording the attempt) for the
    caller to retry. A check already answered is returned as it is (a duplicate task does nothing)."""
    with transaction.atomic():
        check = VatCheck.objects.select_for_update().get(pk=check_id)
        if check.status in (VatCheckStatus.VALID, VatCheckStatus.INVALID):
            return check
    try:
        answer = vies_ask(check.vat_number, requester=_requester())
    except ViesUnavailable as exc:
        with transaction.atomic():
            check = VatCheck.objects.select_for_update().get(pk=check_id)
            check.attempts += 1
            check.status = VatCheckStatus.UNAVAILABLE
            check.error = str(exc)[:300]
            check.save(update_fields=["attempts", "status", "error"])
            Customer.objects.filter(
                pk=check.customer_id, tax_id=check.vat_number, vat_status=VatStatus.UNCHECKED
            ).update(vat_status=VatStatus.UNAVAILABLE)
        raise
    with transaction.atomic():
        check = VatCheck.objects.select_for_update().get(pk=check_id)
        if check.status in (VatCheckStatus.VALID, VatCheckStatus.INVALID):
            return check
        check.attempts += 1
        check.status = VatCheckStatus.VALID if answer.valid else VatCheckStatus.INVALID
        check.checked_at = timezone.now()
        check.request_date = answer.request_date
        check.consultation_number = answer.consultation_number[:100]
        check.trader_name = answer.name[:300]
        check.trader_address = answer.address
        check.error = ""
        check.save()
        # The customer's status follows the answer only while the number is still theirs (a later change queued
        # its own check). ``update``: no save signal, so no new check is queued by this one.
        Customer.objects.filter(pk=check.customer_id, tax_id=check.vat_number).update(
            vat_status=VatStatus.VALID if answer.valid else VatStatus.INVALID
        )
    return check


def vat_checks_due(*, now: dt.datetime | None = None) -> list[int]:
    """Customers whose EU VAT number needs asking (again): never answered, VIES was down, or the last valid
    answer is older than ``VAT_RECHECK_DAYS``. One query."""
    now = now or timezone.now()
    stale = now - dt.timedelta(days=settings.VAT_RECHECK_DAYS)
    answered_recently = VatCheck.objects.filter(status=VatCheckStatus.VALID, checked_at__gte=stale).values(
        "customer_id"
    )
    return list(
        Customer.objects.filter(is_archived=False)
        .exclude(tax_id="")
        .filter(
            Q(vat_status__in=[VatStatus.UNCHECKED, VatStatus.UNAVAILABLE])
            | (Q(vat_status=VatStatus.VALID) & ~Q(pk__in=answered_recently))
        )
        .exclude(vat_status=VatStatus.NOT_APPLICABLE)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def vat_checks_queue_due(*, now: dt.datetime | None = None) -> int:
    """The daily job: queue a check for every customer ``vat_checks_due`` names; returns how many."""
    queued = 0
    for customer in Customer.objects.filter(pk__in=vat_checks_due(now=now)).order_by("pk"):
        with transaction.atomic():
            if vat_check_queue(customer=customer) is not None:
                queued += 1
    return queued


# --- Saving a customer queues the check -------------------------------------------------------------------


def _remember_number(sender: type[Customer], instance: Customer, **kwargs: Any) -> None:
    update_fields = kwargs.get("update_fields")
    if update_fields is not None and "tax_id" not in update_fields:
        return
    before = getattr(instance, "_saved_tax_id", None)
    if instance.pk is not None and before is None:
        before = Customer.objects.filter(pk=instance.pk).values_list("tax_id", flat=True).first()
    changed = (before or "") != (instance.tax_id or "")
    instance._vat_check_needed = changed and bool(instance.tax_id)  # type: ignore[attr-defined]
    if changed:
        instance.vat_status = vat_status_for_number(instance)


def _queue_check(sender: type[Customer], instance: Customer, **kwargs: Any) -> None:
    instance._saved_tax_id = instance.tax_id  # type: ignore[attr-defined]
    if getattr(instance, "_vat_check_needed", False):
        instance._vat_check_needed = False  # type: ignore[attr-defined]
        if settings.VAT_CHECK_ENABLED:
            vat_check_queue(customer=instance)


def connect_signals() -> None:
    pre_save.connect(_remember_number, sender=Customer, dispatch_uid="customers.vat.remember_number")
    post_save.connect(_queue_check, sender=Customer, dispatch_uid="customers.vat.queue_check")


def vat_check_now(*, customer: Customer) -> VatCheck | None:
    """Ask VIES about the customer's current number in this process (the admin's "Check now", the command):
    the check is recorded first, so an unavailable VIES leaves an ``unavailable`` row the daily job retries."""
    if vat_status_for_number(customer) != VatStatus.UNCHECKED:
        return None
    check = VatCheck.objects.create(customer=customer, vat_number=customer.tax_id)
    try:
        return vat_check_perform(check_id=check.pk)
    except ViesUnavailable:
        return VatCheck.objects.get(pk=check.pk)


def dashboard_alerts(*, user: Any, as_of: dt.date) -> list[Alert]:
    """The dashboard's operations list: customers whose VAT number VIES found not registered (they are now taxed
    as consumers); one query, for staff who may view customers."""
    if not user.has_perm("customers.view_customer"):
        return []
    count = Customer.objects.filter(is_archived=False, vat_status=VatStatus.INVALID).count()
    url = reverse("admin:customers_customer_changelist") + f"?vat_status__exact={VatStatus.INVALID}"
    note = "taxed as consumers until the number or the tax status is corrected" if count else ""
    return [Alert("VAT numbers VIES rejected", str(count), url, note)]
