"""The two providers' APIs, as far as the sync uses them: OAuth 2 token endpoints, and create / look up of
contacts (customers), sales invoices, credit notes and payments.

Shapes follow the providers' published references (docs/decisions/ledger-sync.md lists them and what was not
tried against the real services): Xero Accounting API 2.0 (``/api.xro/2.0/Contacts|Invoices|CreditNotes|Payments``,
``xero-tenant-id`` header, ``Idempotency-Key`` header, ``where`` filters) and QuickBooks Online Accounting API v3
(``/v3/company/<realm>/customer|invoice|creditmemo|payment``, ``requestid`` for idempotent creates, the ``query``
endpoint). Amounts travel as JSON numbers written from ``Decimal`` (never through ``float``).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import requests
from django.conf import settings

TIMEOUT_SECONDS = 30
# Used when a 429 carries no Retry-After: Xero's limit is 60 calls a minute per tenant, QuickBooks' 500.
DEFAULT_RETRY_AFTER = 60


class LedgerError(Exception):
    """The provider refused one record (validation): the record is marked failed, the run goes on."""


class LedgerRateLimited(Exception):
    """HTTP 429: the run stops and continues after ``retry_after`` seconds (a Celery countdown, not a sleep)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"rate limited: retry after {retry_after} s")
        self.retry_after = retry_after


class LedgerUnavailable(Exception):
    """Network error or 5xx: nothing is known to be wrong with the record; the run stops and retries later."""


class LedgerAuthExpired(Exception):
    """HTTP 401: the access token expired or was revoked; refreshed once, then the connection needs staff."""


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_in: int  # seconds


# --- JSON with exact decimals -------------------------------------------------------------------------------

_DECIMAL_MARK = "\x00decimal:"
_DECIMAL_RE = re.compile(r'"\\u0000decimal:(-?[0-9.]+)"')


class _DecimalEncoder(json.JSONEncoder):
    def default(self, o: Any) -> Any:
        if isinstance(o, Decimal):
            return f"{_DECIMAL_MARK}{o:f}"
        if isinstance(o, dt.date):
            return o.isoformat()
        return super().default(o)


def dumps(payload: Any) -> str:
    """JSON whose Decimals are written as numbers digit for digit (``100.10``, not ``100.1`` or a float)."""
    return _DECIMAL_RE.sub(r"\1", json.dumps(payload, cls=_DecimalEncoder, ensure_ascii=True))


def provider_settings(provider: str) -> dict[str, Any]:
    config: dict[str, Any] = settings.LEDGER_PROVIDERS[provider]
    return config


# --- the HTTP conversation ------------------------------------------------------------------------------------


class _Client:
    provider = ""

    def __init__(self, *, access_token: str = "", tenant_id: str = "") -> None:
        self.config = provider_settings(self.provider)
        self.access_token = access_token
        self.tenant_id = tenant_id
        self.session = requests.Session()

    # OAuth 2 (RFC 6749): the client authenticates with HTTP Basic at the token endpoint, both providers.
    def authorize_url(self, *, state: str) -> str:
        query = {
            "response_type": "code",
            "client_id": self.config["client_id"],
            "redirect_uri": self.config["redirect_uri"],
            "scope": self.config["scope"],
            "state": state,
        }
        return f"{self.config['authorize_url']}?{urlencode(query)}"

    def _token_request(self, form: dict[str, str]) -> TokenSet:
        basic = base64.b64encode(f"{self.config['client_id']}:{self.config['client_secret']}".encode()).decode()
        data = self._send(
            "POST",
            self.config["token_url"],
            data=form,
            headers={"Authorization": f"Basic {basic}", "Accept": "application/json"},
            auth=False,
        )
        try:
            return TokenSet(str(data["access_token"]), str(data["refresh_token"]), int(data.get("expires_in", 1800)))
        except (KeyError, TypeError, ValueError) as exc:
            raise LedgerError(f"the token endpoint answered without tokens: {exc}") from exc

    def exchange_code(self, *, code: str) -> TokenSet:
        return self._token_request(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": self.config["redirect_uri"]}
        )

    def refresh(self, *, refresh_token: str) -> TokenSet:
        return self._token_request({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}", "Accept": "application/json"}

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Any:
        all_headers = {**(self._headers() if auth else {}), **(headers or {})}
        content: str | dict[str, str] | None = data
        if body is not None:
            content = dumps(body)
            all_headers["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method, url, params=params, data=content, headers=all_headers, timeout=TIMEOUT_SECONDS
            )
        except requests.RequestException as exc:
            raise LedgerUnavailable(f"{self.provider}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code == 429:
            raise LedgerRateLimited(_retry_after(response.headers.get("Retry-After")))
        if response.status_code == 401:
            raise LedgerAuthExpired(f"{self.provider}: 401 {response.text[:300]}")
        if response.status_code >= 500:
            raise LedgerUnavailable(f"{self.provider}: HTTP {response.status_code} {response.text[:300]}")
        if response.status_code >= 400:
            raise LedgerError(f"{self.provider}: HTTP {response.status_code}: {self._error_text(response)}")
        try:
            return response.json(parse_float=Decimal)
        except ValueError as exc:
            raise LedgerUnavailable(f"{self.provider}: not JSON (HTTP {response.status_code})") from exc

    def _error_text(self, response: requests.Response) -> str:
        return response.text[:500]


def _retry_after(value: str | None) -> int:
    """Retry-After in seconds (both providers send seconds; an HTTP date or nonsense falls back to a minute)."""
    try:
        return max(1, int(str(value).strip()))
    except ValueError:
        return DEFAULT_RETRY_AFTER


def _line_quantities(quantity: Decimal | None, unit_amount: Decimal | None, net_amount: Decimal) -> tuple[Any, Any]:
    """Quantity and unit price as the ledger should show them: ours where quantity × unit price is exactly the
    line's net amount; otherwise (a discount, an inclusive tax, a rounded product) 1 × the net amount, so the
    ledger's own arithmetic can never move a cent."""
    if quantity is not None and unit_amount is not None and quantity * unit_amount == net_amount:
        return quantity.normalize(), unit_amount
    return Decimal(1), net_amount


# --- Xero -------------------------------------------------------------------------------------------------------


class XeroClient(_Client):
    """Xero Accounting API 2.0. Creates use PUT (create only, never update) with an ``Idempotency-Key``."""

    provider = "xero"
    COLLECTIONS = {
        "customer": ("Contacts", "ContactID", "ContactNumber"),
        "invoice": ("Invoices", "InvoiceID", "InvoiceNumber"),
        "credit_note": ("CreditNotes", "CreditNoteID", "CreditNoteNumber"),
        "payment": ("Payments", "PaymentID", "Reference"),
    }

    def _headers(self) -> dict[str, str]:
        return {**super()._headers(), "xero-tenant-id": self.tenant_id}

    def _url(self, collection: str) -> str:
        return f"{self.config['api_url'].rstrip('/')}/api.xro/2.0/{collection}"

    def tenants(self) -> list[dict[str, str]]:
        """The organisations the user allowed (GET /connections): [{tenantId, tenantName, tenantType}]."""
        answer = self._send("GET", f"{self.config['api_url'].rstrip('/')}/connections", headers={"xero-tenant-id": ""})
        return [item for item in answer if item.get("tenantType", "ORGANISATION") == "ORGANISATION"]

    def find(self, object_type: str, reference: str) -> str | None:
        collection, id_field, ref_field = self.COLLECTIONS[object_type]
        quoted = reference.replace("\\", "\\\\").replace('"', '\\"')
        answer = self._send("GET", self._url(collection), params={"where": f'{ref_field}=="{quoted}"'})
        for item in answer.get(collection, []):
            if item.get(ref_field) == reference and item.get("Status") not in ("DELETED", "VOIDED"):
                return str(item[id_field])
        return None

    def create(self, object_type: str, payload: dict[str, Any], *, idempotency_key: str) -> str:
        collection, id_field, _ref_field = self.COLLECTIONS[object_type]
        answer = self._send(
            "PUT",
            self._url(collection),
            body={collection: [payload]},
            params={"summarizeErrors": "false"},
            headers={"Idempotency-Key": idempotency_key[:128]},
        )
        items = answer.get(collection) or []
        if not items or not items[0].get(id_field):
            raise LedgerError(f"xero: {collection} answered without {id_field}")
        errors = [error.get("Message", "") for error in items[0].get("ValidationErrors", [])]
        if errors:
            raise LedgerError(f"xero: {'; '.join(errors)}")
        return str(items[0][id_field])

    def _error_text(self, response: requests.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text[:500]
        messages = [
            error.get("Message", "")
            for element in body.get("Elements", [])
            for error in element.get("ValidationErrors", [])
        ]
        return "; ".join(messages) or str(body.get("Message") or body.get("Detail") or response.text[:500])

    # payloads
    def contact(self, customer: Any, *, reference: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "Name": f"{customer.legal_name or customer.name} [{reference}]"[:255],
            "ContactNumber": reference,
            "EmailAddress": customer.email,
            "DefaultCurrency": customer.currency,
            "IsCustomer": True,
            "Addresses": [
                {
                    "AddressType": "POBOX",
                    "AddressLine1": customer.address_line1,
                    "AddressLine2": customer.address_line2,
                    "City": customer.city,
                    "Region": customer.region,
                    "PostalCode": customer.postal_code,
                    "Country": str(customer.country),
                }
            ],
        }
        if customer.tax_id:
            payload["TaxNumber"] = customer.tax_id
        return payload

    def _line(self, *, description: str, quantity: Any, unit: Any, net: Decimal, tax: Decimal, category: str) -> Any:
        quantity, unit = _line_quantities(quantity, unit, net)
        return {
            "Description": description,
            "Quantity": quantity,
            "UnitAmount": unit,
            "LineAmount": net,
            "AccountCode": self.config["sales_account"],
            "TaxType": self.config["tax_types"].get(category, "NONE"),
            "TaxAmount": tax,
        }

    def invoice(self, invoice: Any, lines: list[Any], *, contact_id: str) -> dict[str, Any]:
        return {
            "Type": "ACCREC",
            "Contact": {"ContactID": contact_id},
            "InvoiceNumber": invoice.number,
            "Reference": invoice.number,
            "Date": invoice.issue_date,
            "DueDate": invoice.due_date or invoice.issue_date,
            "CurrencyCode": invoice.currency,
            "LineAmountTypes": "Exclusive",
            "Status": "AUTHORISED",
            "LineItems": [
                self._line(
                    description=line.description,
                    quantity=line.quantity,
                    unit=line.unit_amount,
                    net=line.net_amount,
                    tax=line.tax_amount,
                    category=line.tax_category,
                )
                for line in lines
            ],
        }

    def credit_note(self, note: Any, lines: list[Any], *, contact_id: str) -> dict[str, Any]:
        return {
            "Type": "ACCRECCREDIT",
            "Contact": {"ContactID": contact_id},
            "CreditNoteNumber": note.number,
            "Reference": f"{note.invoice.number}: {note.reason}"[:255],
            "Date": note.issue_date,
            "CurrencyCode": note.currency,
            "LineAmountTypes": "Exclusive",
            "Status": "AUTHORISED",
            "LineItems": [
                self._line(
                    description=line.description,
                    quantity=None,
                    unit=None,
                    net=line.net_amount,
                    tax=line.tax_amount,
                    category=line.tax_category,
                )
                for line in lines
            ],
        }

    def payment(self, allocation: Any, *, reference: str, invoice_id: str, contact_id: str) -> dict[str, Any]:
        return {
            "Invoice": {"InvoiceID": invoice_id},
            "Account": {"Code": self.config["bank_account"]},
            "Date": allocation.payment.received_on,
            "Amount": allocation.amount,
            "Reference": reference,
        }


# --- QuickBooks Online ----------------------------------------------------------------------------------------


class QuickBooksClient(_Client):
    """QuickBooks Online Accounting API v3. Creates are POSTs with ``requestid``: QuickBooks answers a repeated
    request id with the first answer instead of creating again."""

    provider = "quickbooks"
    ENTITIES = {
        "customer": ("customer", "Customer", "DisplayName"),
        "invoice": ("invoice", "Invoice", "DocNumber"),
        "credit_note": ("creditmemo", "CreditMemo", "DocNumber"),
        "payment": ("payment", "Payment", "PaymentRefNum"),
    }
    DOC_NUMBER_MAX = 21

    def _url(self, path: str) -> str:
        return f"{self.config['api_url'].rstrip('/')}/v3/company/{self.tenant_id}/{path}"

    def find(self, object_type: str, reference: str) -> str | None:
        if object_type == "payment":
            return None  # not a queryable field: a repeated create is answered by its requestid instead
        _path, entity, field = self.ENTITIES[object_type]
        quoted = reference.replace("\\", "\\\\").replace("'", "\\'")
        answer = self._send(
            "GET",
            self._url("query"),
            params={
                "query": f"select * from {entity} where {field} = '{quoted}'",  # noqa: S608 - QuickBooks' query API, quoted
                "minorversion": self.config["minor_version"],
            },
        )
        for item in answer.get("QueryResponse", {}).get(entity, []):
            if item.get(field) == reference:
                return str(item["Id"])
        return None

    def create(self, object_type: str, payload: dict[str, Any], *, idempotency_key: str) -> str:
        path, entity, _field = self.ENTITIES[object_type]
        answer = self._send(
            "POST",
            self._url(path),
            body=payload,
            params={"requestid": idempotency_key[:50], "minorversion": self.config["minor_version"]},
        )
        created = answer.get(entity) or {}
        if not created.get("Id"):
            raise LedgerError(f"quickbooks: {entity} answered without Id")
        return str(created["Id"])

    def _error_text(self, response: requests.Response) -> str:
        try:
            errors = response.json().get("Fault", {}).get("Error", [])
        except (ValueError, AttributeError):
            return response.text[:500]
        return (
            "; ".join(
                f"{error.get('code', '')} {error.get('Message', '')}: {error.get('Detail', '')}".strip()
                for error in errors
            )
            or response.text[:500]
        )

    def _doc_number(self, number: str) -> str:
        if len(number) > self.DOC_NUMBER_MAX:
            raise LedgerError(f"quickbooks: DocNumber {number!r} is longer than {self.DOC_NUMBER_MAX} characters")
        return number

    # payloads
    def contact(self, customer: Any, *, reference: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            # DisplayName is unique across a company's names: our reference keeps two customers of one name apart
            "DisplayName": reference,
            "CompanyName": (customer.legal_name or customer.name)[:100],
            "PrimaryEmailAddr": {"Address": customer.email},
            "CurrencyRef": {"value": customer.currency},
            "BillAddr": {
                "Line1": customer.address_line1,
                "Line2": customer.address_line2,
                "City": customer.city,
                "CountrySubDivisionCode": customer.region,
                "PostalCode": customer.postal_code,
                "Country": str(customer.country),
            },
        }
        if customer.tax_id:
            payload["PrimaryTaxIdentifier"] = customer.tax_id
        return payload

    def _line(self, *, description: str, quantity: Any, unit: Any, net: Decimal, category: str) -> Any:
        quantity, unit = _line_quantities(quantity, unit, net)
        tax_code = self.config["tax_codes"].get(category, self.config["default_tax_code"])
        return {
            "DetailType": "SalesItemLineDetail",
            "Amount": net,
            "Description": description,
            "SalesItemLineDetail": {
                "ItemRef": {"value": self.config["item_id"]},
                "Qty": quantity,
                "UnitPrice": unit,
                "TaxCodeRef": {"value": tax_code},
            },
        }

    def _document(self, document: Any, lines: list[Any], *, contact_id: str, quantities: bool) -> dict[str, Any]:
        return {
            "DocNumber": self._doc_number(document.number),
            "TxnDate": document.issue_date,
            "CustomerRef": {"value": contact_id},
            "CurrencyRef": {"value": document.currency},
            "GlobalTaxCalculation": "TaxExcluded",
            "TxnTaxDetail": {"TotalTax": document.tax_total},
            "Line": [
                self._line(
                    description=line.description,
                    quantity=line.quantity if quantities else None,
                    unit=line.unit_amount if quantities else None,
                    net=line.net_amount,
                    category=line.tax_category,
                )
                for line in lines
            ],
        }

    def invoice(self, invoice: Any, lines: list[Any], *, contact_id: str) -> dict[str, Any]:
        payload = self._document(invoice, lines, contact_id=contact_id, quantities=True)
        payload["DueDate"] = invoice.due_date or invoice.issue_date
        return payload

    def credit_note(self, note: Any, lines: list[Any], *, contact_id: str) -> dict[str, Any]:
        payload = self._document(note, lines, contact_id=contact_id, quantities=False)
        payload["PrivateNote"] = f"{note.invoice.number}: {note.reason}"[:4000]
        return payload

    def payment(self, allocation: Any, *, reference: str, invoice_id: str, contact_id: str) -> dict[str, Any]:
        return {
            "CustomerRef": {"value": contact_id},
            "CurrencyRef": {"value": allocation.currency},
            "TotalAmt": allocation.amount,
            "TxnDate": allocation.payment.received_on,
            "PaymentRefNum": reference[:21],
            "Line": [{"Amount": allocation.amount, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
        }


CLIENTS: dict[str, type[XeroClient] | type[QuickBooksClient]] = {"xero": XeroClient, "quickbooks": QuickBooksClient}


def client_for(provider: str, *, access_token: str = "", tenant_id: str = "") -> XeroClient | QuickBooksClient:
    return CLIENTS[provider](access_token=access_token, tenant_id=tenant_id)
