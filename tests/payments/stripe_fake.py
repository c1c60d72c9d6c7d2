"""A local fake of the Stripe HTTP endpoints this product calls, served on 127.0.0.1 and reached through
``STRIPE_API_BASE``: Customers, SetupIntents (create / retrieve with ``expand`` / confirm), PaymentIntents (create
off-session / retrieve / confirm), PaymentMethods (detach), Refunds — plus signed webhook events.

The JSON shapes follow Stripe's API reference (objects trimmed to the fields the product reads, ids with Stripe's
prefixes, amounts in minor units, ``client_secret`` as ``<id>_secret_…``). Behaviour is chosen by Stripe's own
test payment-method names: ``pm_card_visa`` succeeds, ``pm_card_authenticationRequired`` (card …3184) saves fine
and then needs 3-D Secure on every off-session charge (402 ``authentication_required``, intent left in
``requires_payment_method``, as Stripe does), ``pm_card_chargeDeclined`` declines; SEPA debits always answer
``processing`` (the outcome is a webhook). Idempotency keys are honoured (same key → same answer).

The browser stand-in for Stripe.js (static/payments/stripe-standin.js) calls the ``…/confirm`` endpoints here
directly, so the server answers CORS pre-flights.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

WEBHOOK_SECRET = "whsec_test_fake"

CARDS = {
    "pm_card_visa": ("visa", "4242", "succeeds"),
    "pm_card_mastercard": ("mastercard", "4444", "succeeds"),
    "pm_card_authenticationRequired": ("visa", "3184", "authenticate"),
    "pm_card_chargeDeclined": ("visa", "0002", "declined"),
}


def parse_form(body: str) -> dict[str, Any]:
    """Stripe's form encoding (``a[b][0]=x``) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        node: Any = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if isinstance(node, list):
                position = int(part)
                while len(node) <= position:
                    node.append({} if not last else None)
                if last:
                    node[position] = value
                else:
                    if not isinstance(node[position], (dict, list)):
                        node[position] = [] if parts[index + 1].isdigit() else {}
                    node = node[position]
            else:
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, [] if parts[index + 1].isdigit() else {})
    return root


class FakeStripe:
    """State of one fake Stripe account; ``requests`` records every call (path, params, idempotency key)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.idempotent: dict[str, tuple[int, dict[str, Any]]] = {}
        self.counter = itertools.count(1)
        self.lock = threading.Lock()
        self.url = ""

    def _id(self, prefix: str) -> str:
        return f"{prefix}_fake{next(self.counter):04d}"

    # --- objects ------------------------------------------------------------------------------------------

    def _card_method(self, name: str, customer: str | None) -> dict[str, Any]:
        brand, last4, _ = CARDS.get(name, CARDS["pm_card_visa"])
        pm = {
            "id": self._id("pm"),
            "object": "payment_method",
            "type": "card",
            "customer": customer,
            "card": {"brand": brand, "last4": last4, "exp_month": 12, "exp_year": 2034, "country": "DE"},
            "metadata": {"test_card": name},
            "livemode": False,
        }
        self.objects[pm["id"]] = pm
        return pm

    def _sepa_method(self, data: dict[str, Any], customer: str | None) -> dict[str, Any]:
        iban = data["sepa_debit"]["iban"]
        pm = {
            "id": self._id("pm"),
            "object": "payment_method",
            "type": "sepa_debit",
            "customer": customer,
            "billing_details": data.get("billing_details") or {},
            "sepa_debit": {"bank_code": iban[4:12], "country": iban[:2], "last4": iban[-4:], "fingerprint": "fp"},
            "metadata": {},
            "livemode": False,
        }
        self.objects[pm["id"]] = pm
        return pm

    def _mandate(self, pm: dict[str, Any], acceptance: dict[str, Any]) -> dict[str, Any]:
        mandate = {
            "id": self._id("mandate"),
            "object": "mandate",
            "customer_acceptance": acceptance,
            "payment_method": pm["id"],
            "payment_method_details": {
                "type": "sepa_debit",
                "sepa_debit": {"reference": f"FAKE{secrets.token_hex(4).upper()}", "url": "https://example.invalid"},
            },
            "status": "active",
            "type": "multi_use",
        }
        self.objects[mandate["id"]] = mandate
        return mandate

    def _confirm_setup(self, intent: dict[str, Any], params: dict[str, Any]) -> None:
        if "payment_method_data" in params and params["payment_method_data"].get("type") == "sepa_debit":
            pm = self._sepa_method(params["payment_method_data"], intent["customer"])
            mandate = self._mandate(pm, (params.get("mandate_data") or {}).get("customer_acceptance") or {})
            intent["mandate"] = mandate["id"]
        else:
            pm = self._card_method(str(params.get("payment_method") or "pm_card_visa"), intent["customer"])
        intent["payment_method"] = pm["id"]
        intent["status"] = "succeeded"

    def _expanded(self, obj: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        out = dict(obj)
        for field in expand:
            if isinstance(out.get(field), str) and out[field] in self.objects:
                out[field] = self.objects[out[field]]
        return out

    # --- requests -----------------------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        parts = path.strip("/").split("/")[1:]  # without "v1"
        with self.lock:
            if method == "POST" and parts == ["customers"]:
                customer = {"id": self._id("cus"), "object": "customer", **params}
                self.objects[customer["id"]] = customer
                return 200, customer
            if method == "POST" and parts == ["setup_intents"]:
                intent = {
                    "id": self._id("seti"),
                    "object": "setup_intent",
                    "customer": params.get("customer"),
                    "payment_method_types": params.get("payment_method_types") or ["card"],
                    "usage": params.get("usage", "off_session"),
                    "metadata": params.get("metadata") or {},
                    "status": "requires_payment_method",
                    "payment_method": None,
                    "mandate": None,
                    "last_setup_error": None,
                    "livemode": False,
                }
                intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
                self.objects[intent["id"]] = intent
                if params.get("confirm") == "true":
                    self._confirm_setup(intent, params)
                return 200, intent
            if len(parts) >= 2 and parts[0] in ("setup_intents", "payment_intents", "payment_methods"):
                obj = self.objects.get(parts[1])
                if obj is None:
                    return 404, _error("resource_missing", f"No such {parts[0][:-1]}: '{parts[1]}'")
                if method == "GET" and len(parts) == 2:
                    return 200, self._expanded(obj, params.get("expand") or [])
                if parts[0] == "setup_intents" and parts[2:] == ["confirm"]:
                    self._confirm_setup(obj, params)
                    return 200, obj
                if parts[0] == "payment_intents" and parts[2:] == ["confirm"]:
                    obj["status"] = "succeeded"  # 3-D Secure completed by the customer
                    obj["last_payment_error"] = None
                    return 200, obj
                if parts[0] == "payment_methods" and parts[2:] == ["detach"]:
                    obj["customer"] = None
                    return 200, obj
            if method == "POST" and parts == ["payment_intents"]:
                return self._charge(params)
            if method == "GET" and parts == ["refunds"]:
                charge = self.objects.get(str(params.get("charge")), {})
                data = [
                    o
                    for o in self.objects.values()
                    if o.get("object") == "refund" and o.get("charge") == charge.get("id")
                ]
                return 200, {"object": "list", "data": data, "has_more": False, "url": "/v1/refunds"}
            if method == "POST" and parts == ["refunds"]:
                refund = {
                    "id": self._id("re"),
                    "object": "refund",
                    "amount": int(params["amount"]),
                    "payment_intent": params["payment_intent"],
                    "metadata": params.get("metadata") or {},
                    "status": "succeeded",
                }
                self.objects[refund["id"]] = refund
                return 200, refund
        return 404, _error("resource_missing", f"Unrecognized request URL ({method}: {path})")

    def _charge(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        pm = self.objects.get(str(params.get("payment_method")), {})
        intent: dict[str, Any] = {
            "id": self._id("pi"),
            "object": "payment_intent",
            "amount": int(params["amount"]),
            "currency": params["currency"],
            "customer": params.get("customer"),
            "payment_method": params.get("payment_method"),
            "payment_method_types": [pm.get("type", "card")],
            "metadata": params.get("metadata") or {},
            "status": "succeeded",
            "last_payment_error": None,
            "livemode": False,
        }
        intent["client_secret"] = f"{intent['id']}_secret_{secrets.token_hex(8)}"
        self.objects[intent["id"]] = intent
        if pm.get("type") == "sepa_debit":
            intent["status"] = "processing"
            return 200, intent
        behaviour = CARDS.get((pm.get("metadata") or {}).get("test_card", ""), ("", "", "succeeds"))[2]
        if behaviour == "authenticate":
            error = {
                "type": "card_error",
                "code": "authentication_required",
                "decline_code": "authentication_required",
                "message": "Your card was declined. This transaction requires authentication.",
            }
            intent.update(status="requires_payment_method", last_payment_error=error)
            return 402, {"error": {**error, "payment_intent": intent}}
        if behaviour == "declined":
            error = {"type": "card_error", "code": "card_declined", "decline_code": "generic_decline"}
            intent.update(status="requires_payment_method", last_payment_error=error)
            return 402, {"error": {**error, "message": "Your card was declined.", "payment_intent": intent}}
        return 200, intent

    # --- test helpers -------------------------------------------------------------------------------------

    def dashboard_refund(self, payment_intent_id: str, amount: int) -> dict[str, Any]:
        """A refund made in Stripe's dashboard: the charge (without embedded refunds, as API versions since
        2022-11-15 send it in ``charge.refunded``) and its refund."""
        with self.lock:
            charge = {
                "id": self._id("ch"),
                "object": "charge",
                "payment_intent": payment_intent_id,
                "amount_refunded": amount,
            }
            self.objects[charge["id"]] = charge
            refund = {
                "id": self._id("re"),
                "object": "refund",
                "amount": amount,
                "charge": charge["id"],
                "payment_intent": payment_intent_id,
                "metadata": {},
                "status": "succeeded",
            }
            self.objects[refund["id"]] = refund
        return charge

    def calls(self, method: str, prefix: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method and r["path"].startswith(prefix)]

    def event(self, event_type: str, obj: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return {
            "id": event_id or self._id("evt"),
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "type": event_type,
            "livemode": False,
            "data": {"object": obj},
        }


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message}}


def signed(event: dict[str, Any], secret: str = WEBHOOK_SECRET) -> tuple[bytes, str]:
    """The body and ``Stripe-Signature`` header (``t=…,v1=…``) of a webhook delivery."""
    body = json.dumps(event)
    return body.encode(), stripe.WebhookSignature.generate_signature_header(body, secret)


def _handler(fake: FakeStripe) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Request-Id", "req_fake")
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(payload)

        def do_OPTIONS(self) -> None:
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.send_header("Access-Control-Allow-Methods", "GET, POST")
            self.send_header("Access-Control-Allow-Headers", "Content-Type, Authorization")
            self.end_headers()

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            params = parse_form(url.query)
            fake.requests.append({"method": "GET", "path": url.path, "params": params, "idempotency_key": ""})
            self._answer(*fake.handle("GET", url.path, params))

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            params = parse_form(self.rfile.read(length).decode())
            key = self.headers.get("Idempotency-Key", "")
            fake.requests.append({"method": "POST", "path": self.path, "params": params, "idempotency_key": key})
            if key and key in fake.idempotent:
                self._answer(*fake.idempotent[key])
                return
            answer = fake.handle("POST", self.path, params)
            if key:
                fake.idempotent[key] = answer
            self._answer(*answer)

    return Handler


@contextmanager
def serve_fake_stripe() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
