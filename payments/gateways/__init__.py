"""Payment gateways behind one small interface (``base.PaymentGateway``): charge a saved method with an idempotency
key, refund, verify and parse a webhook. ``get_gateway(name)`` returns the adapter for a gateway name."""

from __future__ import annotations

from payments.gateways.base import (
    ChargeResult,
    GatewayUnavailable,
    InvalidWebhook,
    PaymentGateway,
    RefundResult,
    WebhookEventData,
    decline_is_hard,
)


def get_gateway(name: str) -> PaymentGateway:
    if name == "sandbox":
        from payments.gateways.sandbox import SandboxGateway

        return SandboxGateway()
    if name == "stripe":
        from payments.gateways.stripe_gateway import StripeGateway

        return StripeGateway()
    raise ValueError(f"unknown payment gateway '{name}'")


__all__ = [
    "ChargeResult",
    "GatewayUnavailable",
    "InvalidWebhook",
    "PaymentGateway",
    "RefundResult",
    "WebhookEventData",
    "decline_is_hard",
    "get_gateway",
]
