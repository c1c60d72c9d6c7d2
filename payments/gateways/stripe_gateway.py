"""The Stripe adapter: off-session PaymentIntents on the customer's saved payment method, refunds, and webhooks
verified by the library (``stripe.Webhook.construct_event``).

Configuration: ``STRIPE_API_KEY``, ``STRIPE_WEBHOOK_SECRET``, ``STRIPE_API_BASE`` (tests point it at a stub on
127.0.0.1), ``STRIPE_MAX_NETWORK_RETRIES``. The library re-sends a request with the same idempotency key on
network errors; beyond that, an unknown outcome raises ``GatewayUnavailable`` and the caller keeps its
"processing" marker until the recovery sweep re-sends the same key (Stripe keeps keys for at least 24 hours).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import stripe
from django.conf import settings

from payments.gateways.base import (
    ChargeResult,
    GatewayUnavailable,
    InvalidWebhook,
    PaymentMethodRef,
    RefundResult,
    WebhookEventData,
    from_minor_units,
    to_minor_units,
)


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    return json.loads(str(obj))  # StripeObject serialises to its JSON


class StripeGateway:
    name = "stripe"

    def __init__(self) -> None:
        self.client = stripe.StripeClient(
            settings.STRIPE_API_KEY or "sk_test_unset",
            base_addresses={"api": settings.STRIPE_API_BASE},
            max_network_retries=settings.STRIPE_MAX_NETWORK_RETRIES,
        )

    def charge(
        self,
        *,
        method: PaymentMethodRef,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        description: str,
        metadata: Mapping[str, str],
    ) -> ChargeResult:
        params: dict[str, Any] = {
            "amount": to_minor_units(amount, currency),
            "currency": currency.lower(),
            "payment_method": method.token,
            "off_session": True,
            "confirm": True,
            "description": description,
            "metadata": dict(metadata),
        }
        if method.gateway_customer_id:
            params["customer"] = method.gateway_customer_id
        try:
            intent = self.client.v1.payment_intents.create(
                params,  # type: ignore[arg-type]
                {"idempotency_key": idempotency_key},
            )
        except stripe.CardError as exc:
            error = _as_dict((exc.json_body or {}).get("error") if isinstance(exc.json_body, dict) else None)
            pi = _as_dict(error.get("payment_intent"))
            return ChargeResult(
                status="failed",
                reference=str(pi.get("id", "")),
                amount=amount,
                currency=currency,
                decline_code=str(error.get("decline_code") or error.get("code") or exc.code or "card_declined"),
                message=str(error.get("message") or exc.user_message or ""),
                raw=error,
            )
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.IdempotencyError) as exc:
            raise GatewayUnavailable(str(exc)) from exc
        except stripe.InvalidRequestError as exc:
            error = _as_dict(exc.json_body.get("error") if isinstance(exc.json_body, dict) else None)
            return ChargeResult(
                status="failed",
                reference="",
                amount=amount,
                currency=currency,
                decline_code=str(error.get("code") or "payment_method_invalid"),
                message=str(error.get("message") or exc.user_message or ""),
                raw=error,
            )
        except stripe.APIError as exc:
            # 5xx: Stripe may or may not have acted on it; the idempotency key makes re-sending safe.
            raise GatewayUnavailable(str(exc)) from exc
        except stripe.StripeError as exc:  # authentication, permission: nothing was charged
            return ChargeResult(
                status="failed",
                reference="",
                amount=amount,
                currency=currency,
                decline_code="gateway_error",
                message=str(exc.user_message or exc)[:500],
            )
        return self.charge_result(_as_dict(intent), currency)

    @staticmethod
    def charge_result(intent: Mapping[str, Any], currency: str) -> ChargeResult:
        status = intent.get("status")
        error = intent.get("last_payment_error") or {}
        amount = from_minor_units(int(intent.get("amount", 0)), currency)
        if status == "succeeded":
            return ChargeResult(
                status="succeeded", reference=intent["id"], amount=amount, currency=currency, raw=intent
            )
        if status == "processing":
            return ChargeResult(
                status="processing", reference=intent["id"], amount=amount, currency=currency, raw=intent
            )
        code = (
            error.get("decline_code")
            or error.get("code")
            or ("authentication_required" if status == "requires_action" else "card_declined")
        )
        return ChargeResult(
            status="failed",
            reference=intent["id"],
            amount=amount,
            currency=currency,
            decline_code=str(code),
            message=str(error.get("message", "")),
            raw=intent,
        )

    def refund(self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str) -> RefundResult:
        try:
            refund = self.client.v1.refunds.create(
                {"payment_intent": charge_reference, "amount": to_minor_units(amount, currency)},
                {"idempotency_key": idempotency_key},
            )
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.IdempotencyError) as exc:
            raise GatewayUnavailable(str(exc)) from exc
        except stripe.APIError as exc:
            raise GatewayUnavailable(str(exc)) from exc
        except stripe.StripeError as exc:
            return RefundResult(status="failed", reference="", message=str(exc.user_message or exc)[:500])
        data = _as_dict(refund)
        # "pending" refunds are accepted by the card network and complete without further action from us.
        ok = data.get("status") in ("succeeded", "pending")
        return RefundResult(
            status="succeeded" if ok else "failed",
            reference=str(data.get("id", "")),
            message=str(data.get("failure_reason") or ""),
            raw=data,
        )

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> WebhookEventData:
        signature = headers.get("Stripe-Signature") or headers.get("stripe-signature")
        if not settings.STRIPE_WEBHOOK_SECRET:
            raise InvalidWebhook("STRIPE_WEBHOOK_SECRET is not configured")
        try:
            event = stripe.Webhook.construct_event(
                payload,
                signature,
                settings.STRIPE_WEBHOOK_SECRET,
                tolerance=settings.PAYMENTS_WEBHOOK_TOLERANCE_SECONDS,
            )
        except stripe.SignatureVerificationError as exc:
            raise InvalidWebhook(str(exc)) from exc
        except ValueError as exc:
            raise InvalidWebhook(f"not a JSON event: {exc}") from exc
        body = json.loads(payload)
        return WebhookEventData(event_id=str(event.id), event_type=str(event.type), payload=body)
