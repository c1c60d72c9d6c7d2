"""A deterministic gateway for the demo and the tests: no network, Stripe-shaped objects.

Saved-method tokens choose the outcome (the names are Stripe's test payment methods):

- ``pm_card_visa``, ``pm_card_mastercard``, ``pm_card_amex``: success
- ``pm_card_chargeDeclined``: ``generic_decline`` (soft, retried)
- ``pm_card_chargeDeclinedInsufficientFunds``: ``insufficient_funds`` (soft, retried)
- ``pm_card_chargeDeclinedExpiredCard``: ``expired_card`` (hard, not retried)
- ``pm_card_chargeDeclinedProcessingError``: ``processing_error`` (soft, retried)

A token may carry a suffix after a colon (``pm_card_visa:customer-17``) so that several customers can save "the
same" test card while tokens stay unique. Like a real gateway it honours idempotency keys: the same key returns
the first answer and charges nothing again. Ids are derived from the key, so they are stable across processes;
``SandboxGateway.charges`` lists the charges that "moved money" in this process (tests count them). Webhooks are
signed like Stripe's (``Sandbox-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.payload">``) with
``PAYMENTS_SANDBOX_WEBHOOK_SECRET``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar

from django.conf import settings

from payments.gateways.base import (
    ChargeResult,
    InvalidWebhook,
    PaymentMethodRef,
    RefundResult,
    WebhookEventData,
    from_minor_units,
    to_minor_units,
)

SUCCESS_TOKENS = frozenset({"pm_card_visa", "pm_card_mastercard", "pm_card_amex"})
# token → (error code, decline code, message), as Stripe answers for its test cards
DECLINE_TOKENS: dict[str, tuple[str, str, str]] = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
    "pm_card_chargeDeclinedProcessingError": (
        "processing_error",
        "",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
}
CARD_DETAILS: dict[str, tuple[str, str]] = {
    "pm_card_visa": ("visa", "4242"),
    "pm_card_mastercard": ("mastercard", "4444"),
    "pm_card_amex": ("amex", "8431"),
    "pm_card_chargeDeclined": ("visa", "0002"),
    "pm_card_chargeDeclinedInsufficientFunds": ("visa", "9995"),
    "pm_card_chargeDeclinedExpiredCard": ("visa", "0069"),
    "pm_card_chargeDeclinedProcessingError": ("visa", "0119"),
}
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
SIGNATURE_HEADER = "Sandbox-Signature"


def _id(prefix: str, key: str) -> str:
    return f"{prefix}_sbx_{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def sign_payload(payload: bytes, *, secret: str | None = None, timestamp: int | None = None) -> str:
    """The ``Sandbox-Signature`` header value for ``payload`` (used by the demo and the tests)."""
    secret = settings.PAYMENTS_SANDBOX_WEBHOOK_SECRET if secret is None else secret
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class SandboxGateway:
    name = "sandbox"

    # Per process: idempotency key → the first answer; and the charges that succeeded, in order.
    _answers: ClassVar[dict[str, dict[str, Any]]] = {}
    charges: ClassVar[list[dict[str, Any]]] = []
    refunds: ClassVar[list[dict[str, Any]]] = []
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def reset(cls) -> None:
        with cls._lock:
            cls._answers.clear()
            cls.charges.clear()
            cls.refunds.clear()

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
        with self._lock:
            intent = self._answers.get(idempotency_key)
            if intent is None:
                intent = self._payment_intent(method.token, amount, currency, idempotency_key, description, metadata)
                self._answers[idempotency_key] = intent
                if intent["status"] == "succeeded":
                    self.charges.append(intent)
        return self.charge_result(intent, currency)

    @staticmethod
    def charge_result(intent: Mapping[str, Any], currency: str) -> ChargeResult:
        error = intent.get("last_payment_error") or {}
        status = intent["status"]
        return ChargeResult(
            status="succeeded" if status == "succeeded" else "processing" if status == "processing" else "failed",
            reference=intent["id"],
            amount=from_minor_units(int(intent["amount"]), currency),
            currency=currency,
            decline_code=error.get("decline_code") or error.get("code") or "",
            message=error.get("message", ""),
            raw=intent,
        )

    def _payment_intent(
        self,
        token: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        description: str,
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:
        intent: dict[str, Any] = {
            "id": _id("pi", idempotency_key),
            "object": "payment_intent",
            "amount": to_minor_units(amount, currency),
            "currency": currency.lower(),
            "payment_method": token,
            "description": description,
            "metadata": dict(metadata),
            "created": int(time.time()),
            "livemode": False,
        }
        token = token.split(":", 1)[0]
        if token in SUCCESS_TOKENS:
            intent.update(status="succeeded", latest_charge=_id("ch", idempotency_key), last_payment_error=None)
        elif token in DECLINE_TOKENS:
            code, decline_code, message = DECLINE_TOKENS[token]
            error = {"type": "card_error", "code": code, "message": message}
            if decline_code:
                error["decline_code"] = decline_code
            intent.update(
                status="requires_payment_method", latest_charge=_id("ch", idempotency_key), last_payment_error=error
            )
        else:
            intent.update(
                status="requires_payment_method",
                latest_charge=None,
                last_payment_error={
                    "type": "invalid_request_error",
                    "code": "payment_method_invalid",
                    "message": f"No such PaymentMethod: '{token}'",
                },
            )
        return intent

    def refund(self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str) -> RefundResult:
        with self._lock:
            refund = self._answers.get(idempotency_key)
            if refund is None:
                refund = {
                    "id": _id("re", idempotency_key),
                    "object": "refund",
                    "amount": to_minor_units(amount, currency),
                    "currency": currency.lower(),
                    "payment_intent": charge_reference,
                    "status": "succeeded",
                    "created": int(time.time()),
                }
                self._answers[idempotency_key] = refund
                self.refunds.append(refund)
        return RefundResult(status="succeeded", reference=refund["id"], raw=refund)

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> WebhookEventData:
        if not settings.PAYMENTS_SANDBOX_WEBHOOK_SECRET:
            raise InvalidWebhook("PAYMENTS_SANDBOX_WEBHOOK_SECRET is not configured")
        header = headers.get(SIGNATURE_HEADER) or headers.get(SIGNATURE_HEADER.lower()) or ""
        parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
        # Unix seconds, ASCII digits only: int() alone takes "+1", "1_0", Arabic-Indic digits and 400-digit numbers,
        # and a number that big overflowed the float subtraction below (an unauthenticated 500).
        raw_timestamp = parts.get("t", "")
        if not _TIMESTAMP.fullmatch(raw_timestamp):
            raise InvalidWebhook("missing or malformed signature header")
        timestamp = int(raw_timestamp)
        tolerance = settings.PAYMENTS_WEBHOOK_TOLERANCE_SECONDS
        if abs(int(time.time()) - timestamp) > tolerance:
            raise InvalidWebhook("timestamp outside the tolerance zone")
        expected = sign_payload(payload, timestamp=timestamp).split("v1=", 1)[1]
        # Bytes: compare_digest raises TypeError for a str with non-ASCII characters (headers arrive as Latin-1).
        if not hmac.compare_digest(expected.encode(), parts.get("v1", "").encode("utf-8", "surrogateescape")):
            raise InvalidWebhook("signature does not match")
        try:
            event = json.loads(payload)
            return WebhookEventData(event_id=str(event["id"]), event_type=str(event["type"]), payload=event)
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidWebhook(f"not an event: {exc}") from exc


class SimulationGateway(SandboxGateway):
    """The customer test clock's gateway (``payments.gateways.simulation_gateway_only``): the sandbox's answers for
    its test cards, "succeeded" for any other saved method (a real card's answer cannot be known ahead); it
    remembers nothing and moves no money (``charges`` stays as it was)."""

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
        token = method.token
        if token.split(":", 1)[0] not in SUCCESS_TOKENS | DECLINE_TOKENS.keys():
            token = "pm_card_visa"  # noqa: S105 - a sandbox test card, not a secret
        intent = self._payment_intent(token, amount, currency, idempotency_key, description, metadata)
        return self.charge_result(intent, currency)
