"""The domain events sent as webhooks, and how each one's object is found (docs/WEBHOOKS.md lists them).

Every type here gets this app's ``notify`` handler (``apps.WebhooksConfig.ready``). A new domain event type is
added here to be sent; until then it is not (and costs no delivery)."""

from __future__ import annotations

from collections.abc import Mapping

EVENT_TYPES: Mapping[str, str] = {
    "subscription.created": "A subscription was created.",
    "subscription.updated": "A subscription changed: status (trialing, active, past due, paused), items or price.",
    "subscription.canceled": "A subscription was canceled.",
    "invoice.issued": "An invoice was finalized: numbered, amounts frozen, due date set.",
    "invoice.paid": "An invoice's amount due reached zero.",
    "invoice.voided": "An issued invoice was voided (its number is kept).",
    "invoice.uncollectible": "An invoice was written off as uncollectible.",
    "credit_note.issued": "A credit note was issued against an invoice.",
    "payment.succeeded": "A payment was recorded and allocated to invoices (or to the customer's credit).",
    "payment.refunded": "A payment was refunded, in part or in full.",
    "payment.failed": "An automatic charge failed.",
}
