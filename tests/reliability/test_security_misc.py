"""Injection into documents and files, deployment hardening, and secrets kept out of logs (issue 10).

- PDF: customer-controlled text (name, legal name, address, line description, memo, credit note reason) holding
  HTML, ``<img src="http://…">``, ``<link href="file:///etc/passwd">`` or ``@import`` is printed as literal text;
  the renderer opens no socket and reads no file outside the static and media roots.
- CSV: every CSV the back-office writes (each report of ``reporting.reports.REPORTS``, each format of
  ``reporting.exports.ExportFormat``, through the admin downloads) neutralises cells a spreadsheet would run, while
  real negative amounts stay numbers.
- Production settings: the security headers and cookie flags, HTTP → HTTPS.
- Secrets: with every logger at DEBUG (SQL included), a sign-in, e-mails through a provider, card charges and
  webhooks log none of the secrets involved, and the admin pages show none.
Existing, narrower tests: tests/invoicing/test_documents.py (escaping, link_callback), tests/invoicing/
test_exports.py and tests/billing_project/test_reports.py (formula cells), tests/billing_project/test_settings.py
(``check --deploy``, weak SECRET_KEY refused).
"""

from __future__ import annotations

import builtins
import csv
import datetime as dt
import io
import json
import logging
import os
import re
import secrets
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import stripe
from django.contrib import admin
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.urls import reverse
from pypdf import PdfReader

from core.links import invoice_link_token
from invoicing import documents
from invoicing.services import credit_note_issue
from notifications.models import OutboundEmail
from payments.gateways.sandbox import sign_payload
from payments.models import AttemptStatus
from payments.services import invoice_collect
from reporting.exports import ExportFormat
from reporting.metrics import metrics_refresh
from reporting.reports import REPORTS
from tests.factories import CustomerFactory, InvoiceFactory, PaymentMethodFactory, PriceFactory, record_payment
from tests.factories.invoicing import NumberSeriesFactory, TaxRateFactory
from tests.factories.portal import PortalUserFactory
from tests.reliability.conftest_security import basic_auth, response_text, run_under_production

pytestmark = pytest.mark.django_db
ISSUE = dt.date(2026, 3, 2)


@pytest.fixture
def billing(db: Any) -> None:
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"))


# --- PDF ------------------------------------------------------------------------------------------------

OUTSIDE = "198.51.100.7"  # TEST-NET-2: never a real host
HOSTILE_TEXT = {
    "name": f'<img src="http://{OUTSIDE}/pixel.png">Evil & Co',
    "legal_name": '<link rel="stylesheet" href="file:///etc/passwd">Evil Ltd',
    "address_line1": f'<style>@import url("http://{OUTSIDE}/a.css");</style>Main St 1',
    "city": f"@import url(http://{OUTSIDE}/b.css);",
    "description": "<b>bold</b> <script>alert(1)</script> <img src=/etc/passwd>",
    "memo": f'<div style="background:url(http://{OUTSIDE}/c.png)">memo</div>',
    "reason": '<iframe src="file:///etc/shadow"></iframe>',
}


class ResourceSpy:
    """Records every socket connect, DNS lookup and file open while active."""

    def __init__(self, monkeypatch: Any) -> None:
        self.connects: list[Any] = []
        self.lookups: list[Any] = []
        self.opened: list[str] = []
        real_open, real_os_open, real_io_open = builtins.open, os.open, io.open

        def spy_connect(sock: socket.socket, address: Any) -> None:
            self.connects.append(address)
            raise ConnectionRefusedError("no network while rendering")

        def spy_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
            self.lookups.append(args)
            raise socket.gaierror("no DNS while rendering")

        def spy_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            self.opened.append(str(file))
            return real_open(file, *args, **kwargs)

        def spy_os_open(path: Any, *args: Any, **kwargs: Any) -> Any:
            self.opened.append(str(path))
            return real_os_open(path, *args, **kwargs)

        def spy_io_open(file: Any, *args: Any, **kwargs: Any) -> Any:
            self.opened.append(str(file))
            return real_io_open(file, *args, **kwargs)

        monkeypatch.setattr(socket.socket, "connect", spy_connect)
        monkeypatch.setattr(socket.socket, "connect_ex", spy_connect)
        monkeypatch.setattr(socket, "getaddrinfo", spy_getaddrinfo)
        monkeypatch.setattr(builtins, "open", spy_open)
        monkeypatch.setattr(io, "open", spy_io_open)
        monkeypatch.setattr(os, "open", spy_os_open)

    def assert_nothing_outside(self) -> None:
        assert self.connects == [] and self.lookups == []
        assert not [path for path in self.opened if "passwd" in path or "shadow" in path or OUTSIDE in path]


def _pdf_text(pdf: bytes) -> str:
    return "".join("".join(page.extract_text() or "" for page in PdfReader(io.BytesIO(pdf)).pages).split())


def test_markup_in_customer_text_is_printed_literally_and_fetches_nothing(billing: None, monkeypatch: Any) -> None:
    customer = CustomerFactory(
        name=HOSTILE_TEXT["name"],
        legal_name=HOSTILE_TEXT["legal_name"],
        address_line1=HOSTILE_TEXT["address_line1"],
        city=HOSTILE_TEXT["city"],
        exempt=True,
    )
    invoice = InvoiceFactory(
        customer=customer,
        memo=HOSTILE_TEXT["memo"],
        lines=[{"description": HOSTILE_TEXT["description"], "unit_amount": Decimal("10.00")}],
        finalized=ISSUE,
    )
    credit_note = credit_note_issue(invoice=invoice, reason=HOSTILE_TEXT["reason"], amount=Decimal("1.00"))
    documents.register_fonts()  # the fonts are trusted files; load them before spying
    spy = ResourceSpy(monkeypatch)
    invoice_pdf = documents.render_invoice_pdf(invoice=invoice)
    credit_pdf = documents.render_credit_note_pdf(credit_note=credit_note)
    monkeypatch.undo()
    spy.assert_nothing_outside()
    invoice_text, credit_text = _pdf_text(invoice_pdf), _pdf_text(credit_pdf)
    for field in ("legal_name", "address_line1", "city", "description", "memo"):
        assert "".join(HOSTILE_TEXT[field].split()) in invoice_text, field
    assert "".join(HOSTILE_TEXT["reason"].split()) in credit_text
    # The portal's HTML rendering of the same invoice escapes it too (no live tag reaches the browser).
    user = PortalUserFactory(customer=customer)
    client = Client()
    session = client.session
    session["portal_user_id"] = user.pk
    session.save()
    page = client.get(reverse("portal:invoice_detail", args=[invoice.number])).content.decode()
    assert "<script>alert(1)</script>" not in page and f'<img src="http://{OUTSIDE}' not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_raw_markup_reaching_the_renderer_fetches_and_reads_nothing(settings: Any, monkeypatch: Any) -> None:
    """Defence in depth: even if markup bypassed the template's escaping, stylesheets, imports, backgrounds,
    fonts and images from the network or the file system are not loaded."""
    html = f"""<html><head>
    <link rel="stylesheet" href="http://{OUTSIDE}/x.css"><link rel="stylesheet" href="file:///etc/passwd">
    <style>@import url("http://{OUTSIDE}/y.css"); @import "/etc/passwd";
      @font-face {{ font-family: Evil; src: url("http://{OUTSIDE}/f.ttf"); }}
      body {{ background-image: url("file:///etc/shadow"); }}</style></head>
    <body><p style="background: url(http://{OUTSIDE}/bg.png)">x</p>
    <img src="http://{OUTSIDE}/i.png"><img src="/media/%2e%2e/%2e%2e/etc/passwd">
    <img src="/static/..%2f..%2fetc/passwd"><img src="//{OUTSIDE}/proto-relative.png"></body></html>"""
    documents.register_fonts()
    spy = ResourceSpy(monkeypatch)
    pdf = documents.html_to_pdf(html)
    monkeypatch.undo()
    assert pdf.startswith(b"%PDF")
    spy.assert_nothing_outside()


def test_link_callback_refuses_everything_outside_static_and_media(settings: Any, tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "logos").mkdir(parents=True)
    (media / "logos" / "logo.png").write_bytes(b"png")
    (media / "logos" / "escape.png").symlink_to("/etc/passwd")
    settings.MEDIA_ROOT = str(media)
    assert documents.link_callback("/media/logos/logo.png", "") == str((media / "logos" / "logo.png").resolve())
    refused = [
        "/media/logos/escape.png",  # a symlink inside the media root pointing out of it
        "/media/%2e%2e/%2e%2e/etc/passwd",
        "/static/%2e%2e/%2e%2e/etc/passwd",
        "/static/fonts/../../../../etc/passwd",
        "/media/logos/",
        "/media/logos/logo.png?v=1",
        "data:image/png;base64,iVBORw0KGgo=",
        "ftp://example.com/x.png",
        f"//{OUTSIDE}/x.png",
        "\\\\server\\share\\x.png",
        "file:/etc/passwd",
        "/proc/self/environ",
        "",
    ]
    for uri in refused:
        assert documents.link_callback(uri, "") == "", uri


# --- CSV ------------------------------------------------------------------------------------------------

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
CSV_HOSTILE = {
    "name": '=HYPERLINK("http://evil.example","click")',
    "legal_name": "@SUM(A1:A9)",
    "address_line1": "+49 30 1234",
    "city": "\tBerlin",
    "description": "-2+3",
    "second_description": "\r=cmd()",
    "product": "=cmd|' /C calc'!A0",
    "tax_name": "@VAT 19 %",
    "reason": "=1+1",
}


def _number(cell: str) -> bool:
    try:
        Decimal(cell)
    except InvalidOperation:
        return False
    return True


@pytest.fixture
def hostile_books(db: Any) -> dict[str, Any]:
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=Decimal("19"), name=CSV_HOSTILE["tax_name"])
    price = PriceFactory(product__name=CSV_HOSTILE["product"])
    customer = CustomerFactory(
        name=CSV_HOSTILE["name"],
        legal_name=CSV_HOSTILE["legal_name"],
        address_line1=CSV_HOSTILE["address_line1"],
        city=CSV_HOSTILE["city"],
    )
    invoice = InvoiceFactory(
        customer=customer,
        lines=[
            {"description": CSV_HOSTILE["description"], "unit_amount": Decimal("100.00"), "price": price},
            {"description": CSV_HOSTILE["second_description"], "unit_amount": Decimal("20.00")},
        ],
        finalized=ISSUE,
    )
    credit_note_issue(invoice=invoice, reason=CSV_HOSTILE["reason"], amount=Decimal("23.80"), issue_date=ISSUE)
    record_payment(customer=customer, amount="50.00", received_on=dt.date(2026, 3, 10))
    overdue = InvoiceFactory(
        customer=customer, lines=[{"description": "x", "unit_amount": Decimal("5.00")}], finalized=dt.date(2026, 1, 5)
    )
    metrics_refresh(as_of=dt.date(2026, 4, 15))  # the revenue report reads the metrics snapshot
    return {"invoice": invoice, "overdue": overdue}


CSV_FORMATS = [value for value in ExportFormat.values if value != ExportFormat.EINVOICES]  # the e-invoices are a zip


def _csv_downloads(client: Client) -> Iterator[tuple[str, str]]:
    period = {"date_from": "2026-01-01", "date_to": "2026-03-31"}
    for export_format in CSV_FORMATS:
        response = client.post(
            reverse("admin:invoicing_invoice_accounting_export"), {**period, "format": export_format}
        )
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), export_format
        yield f"export:{export_format}", response.content.decode(response.charset)  # DATEV's are Windows-1252
    for slug in REPORTS:
        response = client.get(reverse("admin:report", args=[slug]), {**period, "as_of": "2026-04-15", "format": "csv"})
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), slug
        yield f"report:{slug}", response.content.decode()


def test_every_csv_neutralises_formula_cells_and_keeps_negative_amounts_numbers(hostile_books: Any) -> None:
    client = Client()
    client.force_login(User.objects.create_superuser("root-csv", "root@example.com", "pw"))
    seen_negative_numbers: set[str] = set()
    neutralised: dict[str, set[str]] = {}
    files = dict(_csv_downloads(client))
    assert len(files) == len(CSV_FORMATS) + len(REPORTS)
    for name, text in files.items():
        delimiter = ";" if name.startswith("export:datev") else ","
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
        assert rows, name
        for row in rows:
            for cell in row:
                if cell.startswith(FORMULA_START):
                    assert _number(cell), (name, cell)  # only a real number may start with - (or +)
                    seen_negative_numbers.add(name)
                if cell.startswith("'"):
                    neutralised.setdefault(name, set()).add(cell[1:])
    # Each file carries the hostile text it contains, neutralised.
    assert CSV_HOSTILE["legal_name"] in neutralised["export:csv"] & neutralised["export:xero"]  # the invoice's name
    assert {CSV_HOSTILE["description"], CSV_HOSTILE["second_description"]} <= neutralised["export:csv"]
    assert (
        CSV_HOSTILE["city"] in neutralised["export:xero"] and CSV_HOSTILE["address_line1"] in neutralised["export:xero"]
    )
    assert CSV_HOSTILE["legal_name"] in neutralised["export:datev-debitors"]  # the account's name
    assert CSV_HOSTILE["name"] in neutralised["report:ageing"]
    assert CSV_HOSTILE["product"] in neutralised["report:revenue"]
    assert CSV_HOSTILE["tax_name"] in neutralised["report:tax"]
    # Real negative amounts (the credit note) are written as numbers, not neutralised into text.
    assert "export:xero" in seen_negative_numbers
    assert ",-20.00," in files["export:xero"] and "'-20.00" not in files["export:xero"]


# --- production settings: headers and cookies -----------------------------------------------------------


def test_production_answers_with_security_headers_and_secure_cookies() -> None:
    """``manage.py check --deploy`` is clean (tests/billing_project/test_settings.py); here the actual responses."""
    code = """
from django.conf import settings as s
from django.test import override_settings
# The manifest storage needs collectstatic; what is checked here does not depend on how static URLs are named.
with override_settings(STORAGES={**s.STORAGES, "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}):
    page = client.get("/portal/login/", secure=True)
    plain = client.get("/portal/login/")
    missing = client.get("/no-such-page/", secure=True)
cookie = page.cookies["csrftoken"]
print(json.dumps({
    "status": page.status_code,
    "headers": {k: page.headers.get(k) for k in (
        "Strict-Transport-Security", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy",
        "Cross-Origin-Opener-Policy")},
    "csrf_cookie": {"secure": bool(cookie["secure"]), "httponly": bool(cookie["httponly"]),
                    "samesite": cookie["samesite"]},
    "http": [plain.status_code, plain.headers.get("Location")],
    "not_found": [missing.status_code, any(w in missing.content.decode() for w in ("Traceback", "URLconf"))],
    "settings": {"debug": s.DEBUG, "session_secure": s.SESSION_COOKIE_SECURE,
                 "session_httponly": s.SESSION_COOKIE_HTTPONLY,
                 "csrf_secure": s.CSRF_COOKIE_SECURE, "ssl_redirect": s.SECURE_SSL_REDIRECT,
                 "proxy_header": list(s.SECURE_PROXY_SSL_HEADER)},
}))
"""
    result = run_under_production(code)
    assert result["status"] == 200
    assert result["headers"] == {
        "Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cross-Origin-Opener-Policy": "same-origin",
    }
    assert result["csrf_cookie"] == {"secure": True, "httponly": True, "samesite": "Lax"}
    assert result["http"] == [301, "https://billing.example.com/portal/login/"]
    assert result["not_found"] == [404, False]
    assert result["settings"] == {
        "debug": False,
        "session_secure": True,
        "session_httponly": True,
        "csrf_secure": True,
        "ssl_redirect": True,
        "proxy_header": ["HTTP_X_FORWARDED_PROTO", "https"],
    }


# --- secrets never logged -------------------------------------------------------------------------------


class ProviderStub(BaseHTTPRequestHandler):
    """Loopback stand-in for Postmark (``/email``) and Stripe (``/v1/payment_intents``)."""

    requests: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        self.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, answer = self._answer(body)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _answer(self, body: str) -> tuple[int, dict[str, Any]]:
        if self.path.startswith("/email"):
            to = json.loads(body).get("To", "")
            if "unavailable" in to:
                return 503, {"ErrorCode": 100, "Message": "Maintenance."}
            return 200, {
                "To": to,
                "SubmittedAt": "2026-03-02T10:00:00Z",
                "MessageID": secrets.token_hex(8),
                "ErrorCode": 0,
                "Message": "OK",
            }
        if self.path == "/v1/payment_intents":
            number = len(self.requests)
            intent = {
                "id": f"pi_stub_{number}",
                "object": "payment_intent",
                "status": "succeeded",
                "amount": 1190,
                "currency": "eur",
                "metadata": {},
                "last_payment_error": None,
            }
            if "pm_declined" in body:
                error = {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds.",
                    "payment_intent": {**intent, "status": "requires_payment_method"},
                }
                return 402, {"error": error}
            return 200, intent
        return 404, {"error": {"message": f"unknown path {self.path}"}}


@pytest.fixture
def provider_stub() -> Iterator[str]:
    ProviderStub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ProviderStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _all_loggers_at_debug(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    for name in (*logging.root.manager.loggerDict, "django.request", "django.security.csrf", "django.db.backends"):
        caplog.set_level(logging.DEBUG, logger=name)


def _log_text(caplog: Any) -> str:
    formatter = logging.Formatter()
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(formatter.formatException(record.exc_info))
        parts.append(repr(record.args))
    return "\n".join(parts)


def test_secrets_never_reach_the_logs_or_the_admin(
    billing: None, settings: Any, caplog: Any, provider_stub: str, django_capture_on_commit_callbacks: Any
) -> None:
    known = {
        "SECRET_KEY": "django-" + secrets.token_urlsafe(40),
        "STRIPE_API_KEY": "sk_live_" + secrets.token_urlsafe(24),
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_urlsafe(24),
        "PAYMENTS_SANDBOX_WEBHOOK_SECRET": "whsec_sbx_" + secrets.token_urlsafe(24),
        "POSTMARK_SERVER_TOKEN": secrets.token_hex(18),
        "ANYMAIL_WEBHOOK_SECRET": "hook:" + secrets.token_urlsafe(24),
        "staff password": "Pw-" + secrets.token_urlsafe(18),
    }
    settings.SECRET_KEY = known["SECRET_KEY"]
    settings.STRIPE_API_KEY = known["STRIPE_API_KEY"]
    settings.STRIPE_WEBHOOK_SECRET = known["STRIPE_WEBHOOK_SECRET"]
    settings.STRIPE_API_BASE = provider_stub
    settings.STRIPE_MAX_NETWORK_RETRIES = 0
    settings.PAYMENTS_SANDBOX_WEBHOOK_SECRET = known["PAYMENTS_SANDBOX_WEBHOOK_SECRET"]
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {
        "POSTMARK_SERVER_TOKEN": known["POSTMARK_SERVER_TOKEN"],
        "POSTMARK_API_URL": provider_stub + "/",
        "WEBHOOK_SECRET": known["ANYMAIL_WEBHOOK_SECRET"],
    }
    _all_loggers_at_debug(caplog)
    connection.force_debug_cursor = True  # SQL and its parameters are logged too
    try:
        customer = CustomerFactory(email="billing@alpha.example", exempt=True)
        portal_user = PortalUserFactory(customer=customer, email="person@alpha.example")
        # 1. sign-in link: requested, sent through the provider, opened, a CSRF-less POST (a scanner), used.
        Client().post(reverse("portal:login"), {"email": portal_user.email})
        [sent] = [r for r in ProviderStub.requests if r["path"].startswith("/email")]
        assert sent["headers"]["X-Postmark-Server-Token"] == known["POSTMARK_SERVER_TOKEN"]
        token = re.search(r"/portal/login/([\w-]+)/", json.loads(sent["body"])["TextBody"]).group(1)  # type: ignore[union-attr]
        known["sign-in token"] = token
        Client(enforce_csrf_checks=True).post(reverse("portal:login_confirm", args=[token]))
        browser = Client()
        assert browser.get(reverse("portal:login_confirm", args=[token])).status_code == 200
        assert browser.post(reverse("portal:login_confirm", args=[token])).status_code == 302
        # 2. invoice e-mails through the provider: one accepted, one refused (422).
        with django_capture_on_commit_callbacks(execute=True):
            invoice = InvoiceFactory(
                customer=customer, lines=[{"description": "Plan", "unit_amount": Decimal("11.90")}], finalized=ISSUE
            )
        unlucky = CustomerFactory(email="unavailable@beta.example", exempt=True)
        with django_capture_on_commit_callbacks(execute=True):
            InvoiceFactory(customer=unlucky, finalized=ISSUE)
        assert OutboundEmail.objects.filter(status="sent").exists()
        assert OutboundEmail.objects.exclude(last_error="").exists()  # the provider's error was recorded
        deep_link = invoice_link_token(invoice_id=invoice.pk)
        assert Client().get(reverse("portal:invoice_link", args=[deep_link])).status_code == 302
        log_only = {"deep link": deep_link}  # staff may see it in the e-mail they sent (admin), never in logs
        # 3. card payments through the gateway: one charge succeeds, one is declined.
        PaymentMethodFactory(customer=customer, stripe=True)
        paid = invoice_collect(invoice_id=invoice.pk, as_of=ISSUE, require_automatic=False)
        assert paid is not None and paid.status == AttemptStatus.SUCCEEDED
        declined_customer = CustomerFactory(exempt=True)
        PaymentMethodFactory(customer=declined_customer, stripe=True, token="pm_declined")
        declined_invoice = InvoiceFactory(customer=declined_customer, finalized=ISSUE)
        declined = invoice_collect(invoice_id=declined_invoice.pk, as_of=ISSUE, require_automatic=False)
        assert declined is not None and declined.status == AttemptStatus.FAILED
        stripe_calls = [r for r in ProviderStub.requests if r["path"] == "/v1/payment_intents"]
        assert stripe_calls and all(
            r["headers"]["Authorization"] == f"Bearer {known['STRIPE_API_KEY']}" for r in stripe_calls
        )
        # 4. webhooks: genuine and forged, both gateways and the e-mail provider.
        client = Client()
        event = json.dumps({"id": "evt_log", "object": "event", "type": "charge.refunded", "data": {"object": {}}})
        good = stripe.WebhookSignature.generate_signature_header(event, known["STRIPE_WEBHOOK_SECRET"])
        assert (
            client.post(
                "/webhooks/stripe/", event, content_type="application/json", HTTP_STRIPE_SIGNATURE=good
            ).status_code
            == 200
        )
        assert (
            client.post(
                "/webhooks/stripe/", event + " ", content_type="application/json", HTTP_STRIPE_SIGNATURE=good
            ).status_code
            == 400
        )
        body = event.replace("evt_log", "evt_sbx").encode()
        assert (
            client.post(
                "/webhooks/sandbox/", body, content_type="application/json", HTTP_SANDBOX_SIGNATURE=sign_payload(body)
            ).status_code
            == 200
        )
        assert (
            client.post(
                "/webhooks/sandbox/",
                body + b" ",
                content_type="application/json",
                HTTP_SANDBOX_SIGNATURE=sign_payload(body),
            ).status_code
            == 400
        )
        tracking = json.dumps(
            {
                "RecordType": "Delivery",
                "MessageID": "m-1",
                "Recipient": "billing@alpha.example",
                "DeliveredAt": "2026-03-02T10:00:00Z",
                "Details": "",
                "Tag": "",
                "Metadata": {},
            }
        )
        assert (
            client.post(
                "/anymail/postmark/tracking/",
                tracking,
                content_type="application/json",
                HTTP_AUTHORIZATION=basic_auth(known["ANYMAIL_WEBHOOK_SECRET"]),
            ).status_code
            == 200
        )
        assert (
            client.post(
                "/anymail/postmark/tracking/",
                tracking,
                content_type="application/json",
                HTTP_AUTHORIZATION=basic_auth(known["ANYMAIL_WEBHOOK_SECRET"] + "x"),
            ).status_code
            == 400
        )
        # 5. staff: a failed and a successful admin sign-in with the password.
        staff = User.objects.create_superuser("root-secrets", "root@example.com", known["staff password"])
        admin_client = Client()
        admin_client.post(
            reverse("admin:login"), {"username": staff.username, "password": known["staff password"] + "x"}
        )
        response = admin_client.post(
            reverse("admin:login"), {"username": staff.username, "password": known["staff password"], "next": "/admin/"}
        )
        assert response.status_code == 302
    finally:
        connection.force_debug_cursor = False
    logged = _log_text(caplog)
    assert len(caplog.records) > 50 and "INSERT INTO" in logged  # DEBUG logging, SQL included, was really on
    leaked = {name for name, value in {**known, **log_only}.items() if value in logged}
    assert leaked == set()
    # The scanner's CSRF-less POST of a still valid sign-in link was logged — with the link's secret redacted.
    assert "Forbidden (CSRF cookie not set.): /portal/login/[redacted]/" in logged
    # The admin shows no secret either: its home, every changelist and the rows this flow wrote.
    pages = [reverse("admin:index")]
    for model in admin.site._registry:
        opts = model._meta
        pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        for pk in model._default_manager.order_by("-pk").values_list("pk", flat=True)[:3]:
            pages.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[pk]))
    shown = "\n".join(response_text(admin_client.get(url)) for url in pages)
    assert {name for name, value in known.items() if value in shown} == set()
