"""Local fakes of the Xero and QuickBooks Online endpoints the ledger sync uses, served over HTTP on loopback from
a thread (the real client code, sessions and headers all run). Built from the providers' published API shapes:

- OAuth 2 token endpoints (HTTP Basic client authentication; authorization_code and refresh_token grants; the
  refresh token rotates, a spent one is refused with ``invalid_grant``). Xero's ``GET /connections``.
- Xero ``/api.xro/2.0/{Contacts,Invoices,CreditNotes,Payments}``: PUT creates (``{"Invoices": [{…}]}``), GET with
  ``where=Field=="value"``; unique ContactNumber / InvoiceNumber / CreditNoteNumber (400 ValidationException);
  ``Idempotency-Key`` replays the first answer; ``xero-tenant-id`` required.
- QuickBooks ``/v3/company/<realm>/{customer,invoice,creditmemo,payment}``: POST creates (``{"Invoice": {…}}``),
  ``requestid`` replays the first answer, unique DocNumber (6140) and DisplayName (6240); ``/query`` with
  ``select * from Entity where Field = 'value'``.
- ``refuse[reference] = message``: a create of that number answers 400 with the message (validation).
- ``throttle(n, retry_after)``: the next n API calls answer 429 with Retry-After.

Created objects are kept (amounts parsed as Decimal) so tests assert what the ledger holds.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

CLIENT_ID, CLIENT_SECRET = "fake-client", "fake-secret"
XERO_COLLECTIONS = {
    "Contacts": ("ContactID", "ContactNumber"),
    "Invoices": ("InvoiceID", "InvoiceNumber"),
    "CreditNotes": ("CreditNoteID", "CreditNoteNumber"),
    "Payments": ("PaymentID", None),
}
QBO_ENTITIES = {
    "customer": ("Customer", "DisplayName", "6240", "Duplicate Name Exists Error"),
    "invoice": ("Invoice", "DocNumber", "6140", "Duplicate Document Number Error"),
    "creditmemo": ("CreditMemo", "DocNumber", "6140", "Duplicate Document Number Error"),
    "payment": ("Payment", None, "", ""),
}


class FakeLedger:
    def __init__(self) -> None:
        self.xero: dict[str, list[dict[str, Any]]] = {name: [] for name in XERO_COLLECTIONS}
        self.qbo: dict[str, list[dict[str, Any]]] = {entity: [] for entity, *_ in QBO_ENTITIES.values()}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every API call
        self.access_tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.codes: set[str] = {"good-code"}
        self.token_grants: list[str] = []
        self.throttled = 0
        self.refuse: dict[str, str] = {}  # our reference (InvoiceNumber, DocNumber…) → the validation message
        self.retry_after = "7"
        self._replays: dict[str, tuple[int, Any]] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def settings(self) -> dict[str, dict[str, Any]]:
        common = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
        return {
            "xero": {
                **common,
                "redirect_uri": "https://billing.example/admin/accounting/ledgerconnection/callback/xero/",
                "authorize_url": f"{self.url}/xero/authorize",
                "token_url": f"{self.url}/xero/token",
                "api_url": f"{self.url}/xero",
                "scope": "offline_access accounting.transactions accounting.contacts",
                "sales_account": "200",
                "bank_account": "090",
                "tax_types": {"S": "OUTPUT", "O": "NONE"},
            },
            "quickbooks": {
                **common,
                "redirect_uri": "https://billing.example/admin/accounting/ledgerconnection/callback/quickbooks/",
                "authorize_url": f"{self.url}/qbo/authorize",
                "token_url": f"{self.url}/qbo/token",
                "api_url": f"{self.url}/qbo",
                "scope": "com.intuit.quickbooks.accounting",
                "minor_version": "75",
                "item_id": "1",
                "tax_codes": {"S": "TAX"},
                "default_tax_code": "NON",
            },
        }

    def start(self) -> FakeLedger:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def throttle(self, calls: int, retry_after: str = "7") -> None:
        self.throttled, self.retry_after = calls, retry_after

    def issue_tokens(self) -> dict[str, Any]:
        access, refresh = f"at-{uuid.uuid4().hex}", f"rt-{uuid.uuid4().hex}"
        self.access_tokens.add(access)
        self.refresh_tokens.add(refresh)
        return {"access_token": access, "refresh_token": refresh, "expires_in": 1800, "token_type": "Bearer"}

    def creates(self) -> list[tuple[str, str]]:
        return [call for call in self.requests if call[0] in ("PUT", "POST")]

    # --- request handling ---------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(payload, default=str).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PUT(self) -> None:
                self._route("PUT")

            def _route(self, method: str) -> None:
                url = urlsplit(self.path)
                query = {key: values[0] for key, values in parse_qs(url.query).items()}
                body = self._body()
                with fake._lock:
                    status, payload, headers = fake.dispatch(method, url.path, query, dict(self.headers), body)
                self._answer(status, payload, headers)

        return Handler

    def dispatch(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if path in ("/xero/token", "/qbo/token"):
            return self._token(headers, body)
        self.requests.append((method, path))
        if self.throttled:
            self.throttled -= 1
            return 429, {"Message": "Rate limit exceeded"}, {"Retry-After": self.retry_after}
        auth = headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth.removeprefix("Bearer ") not in self.access_tokens:
            return 401, {"Title": "Unauthorized", "Detail": "TokenExpired"}, {}
        if path == "/xero/connections":
            return (
                200,
                [{"id": "c1", "tenantId": "tenant-1", "tenantType": "ORGANISATION", "tenantName": "Fake Org"}],
                {},
            )
        if path.startswith("/xero/api.xro/2.0/"):
            if headers.get("xero-tenant-id") != "tenant-1":
                return 403, {"Title": "Forbidden", "Detail": "AuthenticationUnsuccessful"}, {}
            return self._xero(method, path.rsplit("/", 1)[1], query, headers, body)
        match = re.fullmatch(r"/qbo/v3/company/([^/]+)/(\w+)", path)
        if match:
            if match.group(1) != "realm-9":
                return 403, {"Fault": {"Error": [{"Message": "ApplicationAuthorizationFailed"}]}}, {}
            return self._qbo(method, match.group(2), query, body)
        return 404, {"Message": f"no route {path}"}, {}

    def _token(self, headers: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        expected = "Basic " + base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if headers.get("Authorization") != expected:
            return 401, {"error": "invalid_client"}, {}
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        self.token_grants.append(form.get("grant_type", ""))
        if form.get("grant_type") == "authorization_code" and form.get("code") in self.codes:
            self.codes.discard(form["code"])
            return 200, self.issue_tokens(), {}
        if form.get("grant_type") == "refresh_token" and form.get("refresh_token") in self.refresh_tokens:
            self.refresh_tokens.discard(form["refresh_token"])  # rotation: a refresh token is good once
            return 200, self.issue_tokens(), {}
        return 400, {"error": "invalid_grant"}, {}

    def _replay(self, key: str, produce: Any) -> tuple[int, Any, dict[str, str]]:
        if key and key in self._replays:
            status, payload = self._replays[key]
            return status, payload, {}
        status, payload = produce()
        if key:
            self._replays[key] = (status, payload)
        return status, payload, {}

    def _xero(
        self, method: str, collection: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        if collection not in XERO_COLLECTIONS:
            return 404, {"Message": collection}, {}
        id_field, unique_field = XERO_COLLECTIONS[collection]
        store = self.xero[collection]
        if method == "GET":
            match = re.fullmatch(r'(\w+)=="(.*)"', query.get("where", ""))
            items = [item for item in store if not match or str(item.get(match.group(1))) == match.group(2)]
            return 200, {collection: items}, {}

        def produce() -> tuple[int, Any]:
            items = json.loads(body, parse_float=Decimal)[collection]
            created = []
            for item in items:
                if unique_field and item.get(unique_field) in self.refuse:
                    return 400, {
                        "ErrorNumber": 10,
                        "Type": "ValidationException",
                        "Message": "A validation exception occurred",
                        "Elements": [{"ValidationErrors": [{"Message": self.refuse[item[unique_field]]}]}],
                    }
                if unique_field and any(other.get(unique_field) == item.get(unique_field) for other in store):
                    label = {"Contacts": "Contact number", "Invoices": "Invoice #", "CreditNotes": "Credit Note #"}
                    return 400, {
                        "ErrorNumber": 10,
                        "Type": "ValidationException",
                        "Message": "A validation exception occurred",
                        "Elements": [{"ValidationErrors": [{"Message": f"{label[collection]} must be unique."}]}],
                    }
                if collection in ("Invoices", "CreditNotes"):
                    item["SubTotal"] = sum((line["LineAmount"] for line in item["LineItems"]), Decimal(0))
                    item["TotalTax"] = sum((line["TaxAmount"] for line in item["LineItems"]), Decimal(0))
                    item["Total"] = item["SubTotal"] + item["TotalTax"]
                created.append({**item, id_field: str(uuid.uuid4())})
            store.extend(created)
            return 200, {collection: created}

        return self._replay(
            f"xero:{headers.get('Idempotency-Key', '')}" if headers.get("Idempotency-Key") else "", produce
        )

    def _qbo(self, method: str, path: str, query: dict[str, str], body: bytes) -> tuple[int, Any, dict[str, str]]:
        if path == "query" and method == "GET":
            match = re.fullmatch(r"select \* from (\w+) where (\w+) = '(.*)'", query.get("query", ""))
            if not match:
                return 400, {"Fault": {"Error": [{"Message": "QueryParserError"}]}}, {}
            entity, field, value = match.groups()
            value = value.replace("\\'", "'")
            items = [item for item in self.qbo.get(entity, []) if str(item.get(field)) == value]
            return 200, {"QueryResponse": {entity: items} if items else {}}, {}
        if path not in QBO_ENTITIES or method != "POST":
            return 404, {"Fault": {"Error": [{"Message": path}]}}, {}
        entity, unique_field, code, message = QBO_ENTITIES[path]
        store = self.qbo[entity]

        def produce() -> tuple[int, Any]:
            item = json.loads(body, parse_float=Decimal)
            if unique_field and any(other.get(unique_field) == item.get(unique_field) for other in store):
                return 400, {
                    "Fault": {"Error": [{"Message": message, "Detail": f"{unique_field} in use", "code": code}]},
                    "type": "ValidationFault",
                }
            if entity in ("Invoice", "CreditMemo"):
                item["TotalAmt"] = sum((line["Amount"] for line in item["Line"]), Decimal(0)) + Decimal(
                    item["TxnTaxDetail"]["TotalTax"]
                )
            item = {**item, "Id": str(len(store) + 1), "SyncToken": "0"}
            store.append(item)
            return 200, {entity: item, "time": "2026-12-04T10:00:00.000-08:00"}

        return self._replay(f"qbo:{query['requestid']}" if query.get("requestid") else "", produce)
