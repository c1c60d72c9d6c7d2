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

from core.errors import InvalidInput
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
            if error.get("code") == "authentication_required" and pi.get("id"):
                # Stripe answers an off-session charge that needs 3-D Secure with a 402 carrying the intent (left
                # in requires_payment_method): the customer confirms that same intent in the portal.
                return self.charge_result({**pi, "last_payment_error": error}, currency)
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
        needs_authentication = status == "requires_payment_method" and error.get("code") == "authentication_required"
        if status in ("requires_action", "requires_confirmation") or needs_authentication:
            # 3-D Secure asked for an off-session charge: not a decline. The customer completes it in the portal
            # (payments/portal_methods.py) and the intent's own webhook or the return page books the outcome.
            return ChargeResult(
                status="requires_action", reference=intent["id"], amount=amount, currency=currency, raw=intent
            )
        code = error.get("decline_code") or error.get("code") or "card_declined"
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
        refund_id = idempotency_key.removeprefix("refund:")
        try:
            refund = self.client.v1.refunds.create(
                {
                    "payment_intent": charge_reference,
                    "amount": to_minor_units(amount, currency),
                    # charge.refunded lists every refund of the charge: this tells ours from the dashboard's.
                    "metadata": {"refund_id": refund_id},
                },
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

    # --- saving methods (SetupIntents), 3-D Secure, reads ---------------------------------------------------
    # Each call below raises ``GatewayUnavailable`` when Stripe cannot be reached and ``StripeRequestFailed``
    # when Stripe refuses the request (the message is Stripe's, for staff and logs).

    def _call(self, call: Any, *args: Any) -> dict[str, Any]:
        try:
            return _as_dict(call(*args))
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError) as exc:
            raise GatewayUnavailable(str(exc)) from exc
        except stripe.StripeError as exc:
            raise StripeRequestFailed(str(exc.user_message or exc)[:500]) from exc

    def customer_create(self, *, name: str, email: str, our_id: int, idempotency_key: str) -> str:
        customer = self._call(
            self.client.v1.customers.create,
            {"name": name[:256], "email": email, "metadata": {"customer_id": str(our_id)}},
            {"idempotency_key": idempotency_key},
        )
        return str(customer["id"])

    def setup_intent_create(
        self,
        *,
        gateway_customer_id: str,
        method_type: str,
        our_customer_id: int,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "customer": gateway_customer_id,
            "payment_method_types": [method_type],
            "usage": "off_session",
            "metadata": {"customer_id": str(our_customer_id)},
            **(extra or {}),
        }
        return self._call(self.client.v1.setup_intents.create, params)

    def setup_intent_retrieve(self, setup_intent_id: str) -> dict[str, Any]:
        return self._call(
            self.client.v1.setup_intents.retrieve, setup_intent_id, {"expand": ["payment_method", "mandate"]}
        )

    def payment_intent_retrieve(self, payment_intent_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.payment_intents.retrieve, payment_intent_id)

    def refunds_of_charge(self, charge_id: str) -> list[dict[str, Any]]:
        """The charge's refunds (API versions since 2022-11-15 no longer embed them in ``charge.refunded``)."""
        page = self._call(self.client.v1.refunds.list, {"charge": charge_id, "limit": 100})
        return list(page.get("data") or [])

    def payment_method_detach(self, payment_method_id: str) -> dict[str, Any]:
        return self._call(self.client.v1.payment_methods.detach, payment_method_id)


class StripeRequestFailed(InvalidInput):
    """Stripe refused a request (invalid IBAN at the bank's check, a SetupIntent of another account, …)."""
