"""Payment gateways behind one small interface (``base.PaymentGateway``): charge a saved method with an idempotency
key, refund, verify and parse a webhook. ``get_gateway(name)`` returns the adapter for a gateway name."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from payments.gateways.base import (
    ChargeResult,
    GatewayUnavailable,
    InvalidWebhook,
    PaymentGateway,
    RefundResult,
    WebhookEventData,
    decline_is_hard,
)

# The customer test clock (reporting/test_clock.py): every charge goes to the simulation gateway, whatever the
# saved method's gateway, so a simulation can never reach a real one.
_SIMULATING: contextvars.ContextVar[bool] = contextvars.ContextVar("payments_simulating", default=False)


@contextlib.contextmanager
def simulation_gateway_only() -> Iterator[None]:
    token = _SIMULATING.set(True)
    try:
        yield
    finally:
        _SIMULATING.reset(token)


def get_gateway(name: str) -> PaymentGateway:
    if _SIMULATING.get():
        from payments.gateways.sandbox import SimulationGateway

        return SimulationGateway()
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
    "simulation_gateway_only",
]
