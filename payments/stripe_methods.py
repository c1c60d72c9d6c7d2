"""Saving payment methods at Stripe (SetupIntents), SEPA Direct Debit mandates, removing methods, and completing
an off-session charge that needs 3-D Secure. Plain, keyword-only, typed functions (docs/STYLE.md); the portal
pages in ``payments.portal_methods`` and staff's admin call these, nothing else writes saved Stripe methods.

Trust: the browser only ever hands us a SetupIntent or PaymentIntent id. What is saved (type, brand, last 4,
expiry, mandate) is read back from Stripe server-side, and only when the intent belongs to this customer (our
customer id in its metadata *and* the Stripe customer we created for them).
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError as StdnumValidationError

from core.dates import billing_today
from core.errors import InvalidInput, NotFound
from customers.models import Customer
from payments.gateways import GatewayUnavailable
from payments.gateways.stripe_gateway import StripeGateway
from payments.locks import lock_in_order
from payments.models import AttemptStatus, Gateway, GatewayCustomer, MethodType, PaymentAttempt, PaymentMethod
from payments.services import payment_attempt_record_result, payment_method_set_default

logger = logging.getLogger(__name__)

# SEPA countries (IBAN prefixes) whose accounts Stripe's sepa_debit can debit.
_SEPA = "AD AT BE BG CH CY CZ DE DK EE ES FI FR GB GI GR HR HU IE IS IT LI LT LU LV MC MT NL NO PL PT RO SE SI SK SM VA"
SEPA_COUNTRIES = frozenset(_SEPA.split(" "))


UNKNOWN_IP = "0.0.0.0"  # noqa: S104 - a mandate's acceptance IP when the request had none (not a bind address)


def _gateway() -> StripeGateway:
    return StripeGateway()


def gateway_customer_ensure(*, customer: Customer) -> str:
    """The customer's Stripe id, creating the Stripe customer once (idempotency key ``customer:<id>``; a second
    request racing this one gets the same ``cus_…`` from Stripe and the unique constraint keeps one row)."""
    existing = GatewayCustomer.objects.filter(customer=customer, gateway=Gateway.STRIPE).first()
    if existing is not None:
        return existing.gateway_customer_id
    legacy = (
        PaymentMethod.objects.filter(customer=customer, gateway=Gateway.STRIPE)
        .exclude(gateway_customer_id="")
        .values_list("gateway_customer_id", flat=True)
        .first()
    )
    cus_id = legacy or _gateway().customer_create(
        name=customer.display_legal_name or customer.name,
        email=customer.email,
        our_id=customer.pk,
        idempotency_key=f"customer:{customer.pk}",
    )
    try:
        with transaction.atomic():
            GatewayCustomer.objects.create(customer=customer, gateway=Gateway.STRIPE, gateway_customer_id=cus_id)
    except IntegrityError:
        pass
    return GatewayCustomer.objects.get(customer=customer, gateway=Gateway.STRIPE).gateway_customer_id


def setup_intent_start(*, customer: Customer, method_type: str = MethodType.CARD) -> dict[str, Any]:
    """A SetupIntent for the portal's card page (the Payment Element confirms it in the browser): ``id`` and
    ``client_secret``."""
    if method_type not in MethodType.values:
        raise InvalidInput(f"'{method_type}' is not a payment method type", field="type")
    cus_id = gateway_customer_ensure(customer=customer)
    intent = _gateway().setup_intent_create(
        gateway_customer_id=cus_id, method_type=method_type, our_customer_id=customer.pk
    )
    return {"id": str(intent["id"]), "client_secret": str(intent.get("client_secret") or "")}


def iban_validated(value: str) -> str:
    """The IBAN in compact form, or ``InvalidInput`` naming the field (check digits, length per country, SEPA)."""
    try:
        compact = stdnum_iban.validate(value)
    except StdnumValidationError as exc:
        raise InvalidInput("This IBAN is not valid (check the digits).", field="iban") from exc
    if compact[:2] not in SEPA_COUNTRIES:
        raise InvalidInput("This account is not in the SEPA area.", field="iban")
    return str(compact)


def sepa_mandate_create(
    *, customer: Customer, iban: str, account_holder: str, email: str, ip: str | None, user_agent: str
) -> PaymentMethod:
    """Collect a SEPA Direct Debit mandate: the IBAN is checked here first (nothing is sent to Stripe for a bad
    one), then a SetupIntent is created and confirmed server-side with the customer's online acceptance (IP and
    browser, as Stripe requires), and the method is saved from what Stripe answers."""
    compact = iban_validated(iban)
    if not account_holder.strip():
        raise InvalidInput("The account holder's name is required.", field="account_holder")
    if not email.strip():
        raise InvalidInput("An e-mail address is required for the mandate.", field="email")
    cus_id = gateway_customer_ensure(customer=customer)
    intent = _gateway().setup_intent_create(
        gateway_customer_id=cus_id,
        method_type=MethodType.SEPA_DEBIT,
        our_customer_id=customer.pk,
        extra={
            "confirm": True,
            "payment_method_data": {
                "type": "sepa_debit",
                "sepa_debit": {"iban": compact},
                "billing_details": {"name": account_holder.strip()[:200], "email": email.strip()},
            },
            "mandate_data": {
                "customer_acceptance": {
                    "type": "online",
                    "online": {"ip_address": ip or UNKNOWN_IP, "user_agent": user_agent[:500] or "unknown"},
                }
            },
        },
    )
    return setup_intent_complete(customer=customer, setup_intent_id=str(intent["id"]))


def setup_intent_complete(*, customer: Customer, setup_intent_id: str) -> PaymentMethod:
    """Save the method of a succeeded SetupIntent as the customer's default (the return page of the card form,
    and the SEPA form). Read from Stripe, never from the browser; calling it again returns the same method."""
    if not setup_intent_id.startswith("seti_"):
        raise NotFound("no such setup")
    intent = _gateway().setup_intent_retrieve(setup_intent_id)
    cus_id = (
        GatewayCustomer.objects.filter(customer=customer, gateway=Gateway.STRIPE)
        .values_list("gateway_customer_id", flat=True)
        .first()
    )
    if (intent.get("metadata") or {}).get("customer_id") != str(customer.pk) or intent.get("customer") != cus_id:
        raise NotFound("no such setup")  # another customer's intent: say nothing about it
    if intent.get("status") not in ("succeeded", "processing"):
        error = intent.get("last_setup_error") or {}
        raise InvalidInput(str(error.get("message") or "The payment method was not confirmed."), field="payment")
    pm = intent.get("payment_method") or {}
    if isinstance(pm, str):  # not expanded (an older API version): nothing to show; refuse rather than guess
        raise InvalidInput("Stripe did not return the payment method.", field="payment")
    mandate = intent.get("mandate") or {}
    fields = _method_fields(pm, mandate if isinstance(mandate, dict) else {"id": str(mandate)})
    with transaction.atomic():
        lock_in_order(customer_id=customer.pk)
        method = PaymentMethod.objects.filter(gateway=Gateway.STRIPE, token=str(pm["id"])).first()
        if method is not None:
            if method.customer_id != customer.pk:
                raise NotFound("no such setup")
            return method
        method = PaymentMethod.objects.create(
            customer=customer, gateway=Gateway.STRIPE, token=str(pm["id"]), gateway_customer_id=cus_id or "", **fields
        )
        payment_method_set_default(payment_method=method)
        if method.type == MethodType.SEPA_DEBIT:
            from payments.notifications import sepa_mandate_email_send

            transaction.on_commit(partial(sepa_mandate_email_send, payment_method_id=method.pk))
    method.refresh_from_db()
    return method


def _method_fields(pm: dict[str, Any], mandate: dict[str, Any]) -> dict[str, Any]:
    kind = pm.get("type")
    if kind == "card":
        card = pm.get("card") or {}
        return {
            "type": MethodType.CARD,
            "brand": str(card.get("brand") or "")[:30],
            "last4": str(card.get("last4") or "")[:4],
            "exp_month": card.get("exp_month"),
            "exp_year": card.get("exp_year"),
        }
    if kind == "sepa_debit":
        sepa = pm.get("sepa_debit") or {}
        details = (mandate.get("payment_method_details") or {}).get("sepa_debit") or {}
        return {
            "type": MethodType.SEPA_DEBIT,
            "brand": str(sepa.get("country") or "")[:30],
            "last4": str(sepa.get("last4") or "")[:4],
            "mandate_id": str(mandate.get("id") or "")[:255],
            "mandate_reference": str(details.get("reference") or "")[:100],
        }
    raise InvalidInput(f"payment method type '{kind}' is not supported", field="payment")


def stripe_method_detach(*, payment_method_id: int) -> None:
    """After commit of a removal: detach the method at Stripe so it can never be charged (a failure is logged;
    the method is inactive here either way and never charged by us)."""
    method = PaymentMethod.objects.get(pk=payment_method_id)
    if method.gateway != Gateway.STRIPE:
        return
    try:
        _gateway().payment_method_detach(method.token)
    except (GatewayUnavailable, InvalidInput):
        logger.warning("payment method %s: detaching %s at Stripe failed", method.pk, method.token, exc_info=True)


def payment_method_update_from_gateway(*, pm: dict[str, Any]) -> int:
    """``payment_method.updated`` / ``automatically_updated`` (a card re-issued with a new expiry): the saved
    copy follows. Returns the rows changed."""
    if pm.get("type") != "card":
        return 0
    card = pm.get("card") or {}
    return PaymentMethod.objects.filter(gateway=Gateway.STRIPE, token=str(pm.get("id", ""))).update(
        brand=str(card.get("brand") or "")[:30],
        last4=str(card.get("last4") or "")[:4],
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


# --- 3-D Secure of an off-session charge ------------------------------------------------------------------


def attempt_awaiting_action(*, invoice_id: int) -> PaymentAttempt | None:
    return (
        PaymentAttempt.objects.filter(invoice_id=invoice_id, status=AttemptStatus.REQUIRES_ACTION, gateway="stripe")
        .select_related("payment_method")
        .first()
    )


def payment_intent_client_secret(*, attempt: PaymentAttempt) -> str:
    """The client secret the portal page hands to ``stripe.handleNextAction`` (fetched now, never stored)."""
    intent = _gateway().payment_intent_retrieve(attempt.gateway_reference)
    if (intent.get("metadata") or {}).get("payment_attempt_id") != str(attempt.pk):
        raise NotFound("no such payment")
    return str(intent.get("client_secret") or "")


def payment_intent_refresh(*, attempt: PaymentAttempt) -> PaymentAttempt:
    """The portal's return page after 3-D Secure: read the intent from Stripe and book what it says (the same
    booking as the webhook's; whichever comes second finds it done)."""
    intent = _gateway().payment_intent_retrieve(attempt.gateway_reference)
    if (intent.get("metadata") or {}).get("payment_attempt_id") != str(attempt.pk):
        raise NotFound("no such payment")
    result = StripeGateway.charge_result(intent, attempt.currency)
    if result.status == "requires_action":
        return attempt  # not completed (closed the window): the link stays valid
    return payment_attempt_record_result(attempt_id=attempt.pk, result=result, as_of=billing_today())
