"""The gateway interface and the value types every adapter returns (shaped after Stripe's objects)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, Protocol

from core.errors import InvalidInput, Unavailable
from core.money import minor_units

# Declines the customer must fix (a new card, authentication): retrying the same card cannot succeed.
HARD_DECLINE_CODES = frozenset(
    {
        "expired_card",
        "incorrect_number",
        "invalid_number",
        "invalid_expiry_month",
        "invalid_expiry_year",
        "invalid_cvc",
        "lost_card",
        "stolen_card",
        "pickup_card",
        "fraudulent",
        "restricted_card",
        "card_not_supported",
        "currency_not_supported",
        "authentication_required",
        "payment_method_invalid",
        "no_payment_method",
    }
)


def decline_is_hard(code: str) -> bool:
    """Soft declines (insufficient funds, a generic decline, a processing error) are retried on the schedule."""
    return code in HARD_DECLINE_CODES


class GatewayUnavailable(Unavailable):
    """The gateway could not be reached or answered with a server error: the outcome is unknown. The caller keeps
    its "processing" marker and re-sends the same idempotency key later."""


class InvalidWebhook(InvalidInput):
    """A webhook whose signature, timestamp or body does not check out."""


@dataclass(frozen=True)
class ChargeResult:
    status: Literal["succeeded", "failed", "processing", "requires_action"]
    reference: str  # the gateway's id of the payment (a PaymentIntent id)
    amount: Decimal
    currency: str
    decline_code: str = ""
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def hard_decline(self) -> bool:
        return self.status == "failed" and decline_is_hard(self.decline_code)


@dataclass(frozen=True)
class RefundResult:
    status: Literal["succeeded", "failed"]
    reference: str
    message: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookEventData:
    event_id: str
    event_type: str
    payload: Mapping[str, Any]

    @property
    def object(self) -> Mapping[str, Any]:
        data = self.payload.get("data") or {}
        return data.get("object") or {}


class PaymentMethodRef(Protocol):
    """What an adapter needs of a saved method (``payments.models.PaymentMethod`` fits)."""

    token: str
    gateway_customer_id: str


class PaymentGateway(Protocol):
    name: str

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
        """Charge off-session. Raises ``GatewayUnavailable`` when the outcome is unknown."""
        ...

    def refund(self, *, charge_reference: str, amount: Decimal, currency: str, idempotency_key: str) -> RefundResult:
        """Refund part or all of a charge. Raises ``GatewayUnavailable`` when the outcome is unknown."""
        ...

    def parse_webhook(self, *, payload: bytes, headers: Mapping[str, str]) -> WebhookEventData:
        """Verify the signature (rejecting stale timestamps) and parse. Raises ``InvalidWebhook``."""
        ...


def to_minor_units(amount: Decimal, currency: str) -> int:
    """10.50 EUR → 1050; 500 JPY → 500; 1.234 BHD → 1234 (exact: the amount is already rounded)."""
    scaled = amount.scaleb(minor_units(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} has more decimals than the currency")
    return int(scaled)


def from_minor_units(value: int, currency: str) -> Decimal:
    return Decimal(value).scaleb(-minor_units(currency))
