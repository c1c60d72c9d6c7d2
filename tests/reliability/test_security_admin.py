"""The staff admin under hostile staff (issue 10): a permission matrix derived from the admin registry, every admin
action and process screen refused to the roles that lack its permission, CSRF on every admin URL, GETs that change
nothing, and no CSRF-exempt view besides the signed webhooks.

Roles: the three staff groups (``billing_project.staff_groups``), staff without a group, and a non-staff user. The
expectation for each (model, view, role) is the group's permission (``user.has_perm``, i.e. what
``staff_groups.GROUP_PERMISSIONS`` grants) intersected with what the model admin allows anyone at all (a superuser):
show-only admins (events, logs, payments) allow no add/change/delete whatever the group says. Extends
tests/billing_project/test_roles.py, which checks changelists, add forms and a few actions per role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import connection
from django.db.models import Model, Q
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from billing_project.staff_groups import AUDITOR, BILLING_ADMIN, BILLING_CLERK
from tests.databases import rolled_back_on
from tests.factories import BankTransactionFactory, CustomerDunningSettingsFactory, StaffUserFactory
from tests.reliability.conftest_security import changed_tables, db_digest

# The module's rows (one of every model, a PDF among them) are built once, before each test's own media folder
# exists, so the archived-file check cannot read that PDF; every other invariant is checked after each test.
# The demo data comes from the demo seeded once per test process (tests/conftest.py ``seeded_demo``).
pytestmark = [
    pytest.mark.django_db,
    pytest.mark.slow,
    pytest.mark.integrity_except("pdfs"),
    pytest.mark.xdist_group("demo"),
]

ROLES = (BILLING_ADMIN, BILLING_CLERK, AUDITOR, "staff without group", "not staff")
# Writes that a refused request may legitimately cause: none but the session.
VOLATILE = frozenset({"django_session"})


def _registry() -> list[tuple[type[Model], admin.ModelAdmin]]:
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def _user(role: str) -> User:
    if role == "superuser":
        user = StaffUserFactory(is_superuser=True)
    elif role == "not staff":
        user = StaffUserFactory(is_staff=False)
    elif role == "staff without group":
        user = StaffUserFactory()
    else:
        user = StaffUserFactory(group=role)
    return User.objects.get(pk=user.pk)  # a fresh instance: no cached permissions


def _client(user: User, *, enforce_csrf_checks: bool = False) -> Client:
    client = Client(enforce_csrf_checks=enforce_csrf_checks)
    client.force_login(user)
    return client


def _request(user: User) -> Any:
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _build_every_model() -> dict[type[Model], Model]:
    """At least one row of every model registered in the admin: the demo data (already seeded: ``_module_rows``),
    the periodic jobs, and what the demo leaves empty. A newly registered model without a row makes this fail, so
    it gets covered."""
    from django_celery_beat.models import ClockedSchedule, IntervalSchedule, SolarSchedule
    from django_otp.plugins.otp_static.models import StaticDevice
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from invoicing.models import Invoice
    from invoicing.services import credit_note_issue
    from notifications.models import EmailAddressStatus
    from payments.models import Dispute, FeeKind, GatewayFee, Payment, WebhookEvent
    from payments.services import payment_refund
    from reporting.models import IntegrityCheck
    from subscriptions.models import BillableMetric, PendingInvoiceItem, Subscription

    call_command("setup_schedules", stdout=None)
    ClockedSchedule.objects.get_or_create(clocked_time=timezone.now())
    IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.MINUTES)
    SolarSchedule.objects.get_or_create(event="sunrise", latitude=Decimal("52.52"), longitude=Decimal("13.40"))
    invoice = Invoice.objects.finalized().filter(status="open").order_by("pk").first()
    assert invoice is not None
    credit_note_issue(invoice=invoice, reason="security test", amount=Decimal("1.00"))
    CustomerDunningSettingsFactory(customer=invoice.customer)
    EmailAddressStatus.objects.create(email="bounced@customer.example")
    BankTransactionFactory(amount=Decimal("12.00"))
    payment = Payment.objects.filter(amount_refunded=0).order_by("pk").first()
    assert payment is not None
    payment_refund(payment=payment, reason="security test", amount=Decimal("1.00"))
    # Stripe's side (issue 23): a dispute and the fee it cost
    dispute = Dispute.objects.create(
        gateway="stripe", gateway_reference="dp_security", payment=payment, currency=payment.currency, amount=1
    )
    GatewayFee.objects.create(
        kind=FeeKind.DISPUTE,
        gateway="stripe",
        source_reference=dispute.gateway_reference,
        customer_id=payment.customer_id,
        currency=payment.currency,
        amount=Decimal("15.00"),
        booked_on=dt.date(2026, 3, 2),
    )
    WebhookEvent.objects.create(gateway="sandbox", event_id="evt_security", event_type="ping", payload={})
    BillableMetric.objects.create(code="security-test", name="Security test", aggregation="count")
    subscription = Subscription.objects.order_by("pk").first()
    assert subscription is not None
    today = dt.date(2026, 3, 2)
    PendingInvoiceItem.objects.create(
        subscription=subscription,
        description="one-off",
        quantity=Decimal(1),
        unit_amount=Decimal("5.00"),
        amount=Decimal("5.00"),
        period_start=today,
        period_end=today + dt.timedelta(days=30),
        effective_on=today,
    )
    # Staff two-factor devices (billing_project.staff_auth): superusers reset a lost one in the admin.
    auditor = User.objects.get(username="auditor")
    TOTPDevice.objects.create(user=auditor, name="security test", confirmed=True)
    StaticDevice.objects.create(user=auditor, name="security test", confirmed=True).token_set.create(token="abcd2345")
    IntegrityCheck.objects.create(
        started_at=timezone.now(), finished_at=timezone.now(), ok=True, checked={}, problems=[], triggered_by="test"
    )
    # The ledger sync (accounting/ledger): a connection and one record of its log.
    from accounting.ledger.crypto import token_encrypt
    from accounting.ledger.models import LedgerConnection, SyncRecord

    ledger = LedgerConnection.objects.create(
        provider="xero",
        tenant_id="tenant-1",
        access_token_encrypted=token_encrypt("access"),
        refresh_token_encrypted=token_encrypt("refresh"),
        access_token_expires_at=timezone.now(),
        connected_at=timezone.now(),
    )
    SyncRecord.objects.create(
        connection=ledger, object_type="invoice", local_id=invoice.pk, reference=invoice.number, status="failed"
    )
    rows: dict[type[Model], Model] = {}
    for model, _model_admin in _registry():
        row = model._default_manager.order_by("pk").first()
        assert row is not None, f"no {model._meta.label} row: add one to this fixture"
        rows[model] = row
    return rows


@pytest.fixture(scope="module")
def _module_rows(seeded_demo: Any, django_db_blocker: Any) -> Iterator[dict[type[Model], Model]]:
    """Built once for this module on the seeded demo inside a transaction that is rolled back at its end (each
    test runs in a savepoint inside it), so the demo data is seeded once, not per test, and nothing outlives the
    module."""
    with django_db_blocker.unblock(), rolled_back_on(seeded_demo.database):
        with override_settings(BILLING_AFTER_FINALIZE_HOOKS=False):
            rows = _build_every_model()
        yield rows


@pytest.fixture
def every_model(_module_rows: dict[type[Model], Model], db: Any) -> dict[type[Model], Model]:
    return _module_rows


def _expected(model: type[Model], model_admin: admin.ModelAdmin, obj: Model, user: User, superuser: User) -> dict:
    opts = model._meta
    su = _request(superuser)

    def perm(action: str) -> bool:
        return user.is_staff and user.has_perm(f"{opts.app_label}.{action}_{opts.model_name}")

    return {
        "changelist": perm("view") or perm("change"),
        "add": perm("add") and model_admin.has_add_permission(su),
        "change_get": perm("view") or perm("change"),
        "change_post": perm("change") and model_admin.has_change_permission(su, obj),
        "delete": perm("delete") and model_admin.has_delete_permission(su, obj),
    }


def test_every_registered_model_answers_each_role_as_its_group_allows(every_model: dict) -> None:
    """Change form and delete confirmation of every registered model for every role (changelist and add form too
    for staff without a group and non-staff; test_roles.py has them for the groups), history for a superuser:
    200 where the role is allowed, 403 where not (non-staff: to the login), refused writes POSTed for real.
    No GET and no refused POST changes a row."""
    superuser = User.objects.create_superuser("root-sec", "root@example.com", "pw")
    users = {role: _user(role) for role in ("superuser", *ROLES)}
    clients = {role: _client(user) for role, user in users.items()}
    before = db_digest(exclude=VOLATILE)
    granted: dict[str, set[tuple[str, str]]] = {role: set() for role in users}  # answered 200
    policy: dict[str, set[tuple[str, str]]] = {role: set() for role in users}  # expected to be allowed
    for role in users:
        user, client = users[role], clients[role]
        for model, model_admin in _registry():
            obj = every_model[model]
            opts = model._meta
            base = f"admin:{opts.app_label}_{opts.model_name}"
            expected = _expected(model, model_admin, obj, user, superuser)
            policy[role] |= {(opts.label, view) for view, allowed in expected.items() if allowed}
            pk = str(obj.pk)
            checks: list[tuple[str, str, str, bool]] = [
                ("change_get", "get", reverse(f"{base}_change", args=[pk]), expected["change_get"]),
                ("delete", "get", reverse(f"{base}_delete", args=[pk]), expected["delete"]),
            ]
            if role in ("staff without group", "not staff"):  # the groups' changelists and add forms: test_roles.py
                checks += [
                    ("changelist", "get", reverse(f"{base}_changelist"), expected["changelist"]),
                    ("add", "get", reverse(f"{base}_add"), expected["add"]),
                ]
            if role == "superuser":
                checks.append(("history", "get", reverse(f"{base}_history", args=[pk]), expected["change_get"]))
            if role == "not staff":  # the admin's login gate comes before any view: a sample per model suffices
                checks = checks[-2:-1]
            # Refused writes are POSTed for real: they must be 403 and change nothing.
            if not expected["add"]:
                checks.append(("add", "post", reverse(f"{base}_add"), False))
            if not expected["change_post"]:
                checks.append(("change_post", "post", reverse(f"{base}_change", args=[pk]), False))
            if not expected["delete"]:
                checks.append(("delete", "post", reverse(f"{base}_delete", args=[pk]), False))
            for view, method, url, allowed in checks:
                data = {"post": "yes"} if method == "post" else None
                response = getattr(client, method)(url, data)
                if role == "not staff":
                    assert response.status_code == 302 and "/admin/login/" in response["Location"], (url, method)
                    continue
                want = 200 if allowed else 403
                assert response.status_code == want, (role, opts.label, view, method, response.status_code)
                if allowed:
                    granted[role].add((opts.label, view))
    assert changed_tables(before, db_digest(exclude=VOLATILE)) == []
    assert granted["staff without group"] == set() and granted["not staff"] == set()
    assert {label for label, view in granted[AUDITOR] if view == "change_get"} >= {
        "invoicing.Invoice",
        "payments.Payment",
    }
    # The matrix in words, so that a change to GROUP_PERMISSIONS is a visible decision:
    assert not {view for _label, view in policy[AUDITOR]} & {"add", "change_post", "delete"}
    assert not {view for _label, view in policy[BILLING_CLERK]} & {"delete"}
    assert policy["staff without group"] == set() and policy["not staff"] == set()
    for role in ROLES:
        assert not {label for label, _view in policy[role]} & {"auth.User", "auth.Group"}, role
    clerk_adds = {label for label, view in policy[BILLING_CLERK] if view == "add"}
    assert {"customers.Customer", "invoicing.Invoice"} <= clerk_adds
    assert "invoicing.TaxRate" not in clerk_adds and "invoicing.NumberSeries" not in clerk_adds
    assert ("payments.Payment", "add") in policy[BILLING_ADMIN]
    # API keys (issue 22) are a billing admin's alone; nobody deletes one (it is revoked, and stays in the audit).
    assert {view for label, view in policy[BILLING_ADMIN] if label == "api.ApiKey"} == {
        "changelist",
        "add",
        "change_get",
        "change_post",
    }
    for role in (BILLING_CLERK, AUDITOR):
        assert "api.ApiKey" not in {label for label, _view in policy[role]}, role
    assert ("api.ApiKey", "delete") not in policy["superuser"]
    # The sample invoice is finalized: nobody, not even a superuser, may change or delete it in the admin.
    assert not {("invoicing.Invoice", "change_post"), ("invoicing.Invoice", "delete")} & policy["superuser"]


# --- admin actions --------------------------------------------------------------------------------------


def _action_permissions(function: Callable[..., Any]) -> tuple[str, ...]:
    """What an action needs. An action that declares nothing changes data all the same (django-celery-beat's
    enable/disable/run): it must need at least the change permission."""
    return tuple(getattr(function, "allowed_permissions", None) or ("change",))


def _may(model_admin: admin.ModelAdmin, permission: str, user: User) -> bool:
    return bool(getattr(model_admin, f"has_{permission}_permission")(_request(user)))


def test_every_admin_action_is_refused_to_roles_without_its_permission(every_model: dict, monkeypatch: Any) -> None:
    """POST each action of each model admin, with one row selected, as each role that lacks the action's
    permission: nothing changes and no task is sent."""
    from celery.app.task import Task

    sent: list[str] = []
    monkeypatch.setattr(Task, "apply_async", lambda self, *args, **kwargs: sent.append(self.name))
    roles = (BILLING_CLERK, AUDITOR, "staff without group")
    users = {role: _user(role) for role in roles}
    clients = {role: _client(user) for role, user in users.items()}
    before = db_digest(exclude=VOLATILE)
    posted: list[tuple[str, str, str]] = []
    for role in roles:
        user, client = users[role], clients[role]
        for model, model_admin in _registry():
            opts = model._meta
            for function, name, _description in model_admin._get_base_actions():
                needs = _action_permissions(function)
                if all(_may(model_admin, permission, user) for permission in needs):
                    continue
                response = client.post(
                    reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
                    {"action": name, "_selected_action": [every_model[model].pk], "index": 0, "post": "yes"},
                )
                # 403, or the changelist again (200/302) with "No action selected": never the action's effect.
                assert response.status_code in (200, 302, 403), (role, opts.label, name, response.status_code)
                posted.append((role, opts.label, name))
    assert changed_tables(before, db_digest(exclude=VOLATILE)) == []
    assert sent == []
    posted_names = {(label, name) for _role, label, name in posted}
    assert ("invoicing.Invoice", "void_selected") in posted_names
    assert ("payments.Payment", "refund_in_full") in posted_names
    assert ("django_celery_beat.PeriodicTask", "disable_tasks") in posted_names


def test_an_auditor_cannot_switch_off_or_trigger_the_billing_run(every_model: dict, monkeypatch: Any) -> None:
    """The case that failed: django-celery-beat's actions declare no permission, so a read-only auditor could
    disable the daily billing run (billing silently stops) or run any job now."""
    from celery.app.task import Task
    from django_celery_beat.models import PeriodicTask

    sent: list[str] = []
    monkeypatch.setattr(Task, "apply_async", lambda self, *args, **kwargs: sent.append(self.name))
    billing = PeriodicTask.objects.get(task="invoicing.run_billing")
    assert billing.enabled
    url = reverse("admin:django_celery_beat_periodictask_changelist")
    for role in (AUDITOR, BILLING_CLERK):
        client = _client(_user(role))
        for action in ("disable_tasks", "toggle_tasks", "run_tasks"):
            client.post(url, {"action": action, "_selected_action": [billing.pk], "index": 0})
    billing.refresh_from_db()
    assert billing.enabled and sent == []
    # A billing admin (change permission on the schedules) still can.
    _client(_user(BILLING_ADMIN)).post(url, {"action": "disable_tasks", "_selected_action": [billing.pk], "index": 0})
    billing.refresh_from_db()
    assert not billing.enabled


# --- process screens (custom admin URLs) ----------------------------------------------------------------

STANDARD_SUFFIXES = ("_changelist", "_add", "_change", "_delete", "_history", "_autocomplete")
SITE_URLS = frozenset(
    {"index", "login", "logout", "password_change", "password_change_done", "autocomplete", "jsi18n", "app_list"}
)


def _admin_patterns() -> Iterator[tuple[str, URLPattern]]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern

    yield from walk(admin.site.urls[0], "admin/")


# name → (kwargs from the rows, the permissions a user needs for GET and POST)
PROCESS_SCREENS: dict[str, tuple[Callable[[dict], dict[str, Any]], tuple[str, ...]]] = {
    "invoicing_invoice_credit_note": (
        lambda rows: {"invoice_id": _row(rows, "invoicing.Invoice").pk},
        ("invoicing.add_creditnote",),
    ),
    # the invoice page's buttons (issue 18): a state that does not allow the action shows why, with a 200
    **{
        f"invoicing_invoice_{name}": (lambda rows: {"invoice_id": _row(rows, "invoicing.Invoice").pk}, needs)
        for name, needs in (
            ("finalize", ("invoicing.finalize_invoice",)),
            ("send_email", ("notifications.add_outboundemail",)),
            ("void", ("invoicing.void_invoice",)),
            ("mark_uncollectible", ("invoicing.mark_uncollectible_invoice",)),
            ("portal_preview", ("invoicing.view_invoice",)),
            ("record_payment", ("payments.add_payment",)),
            ("apply_credit", ("payments.add_creditledgerentry",)),
            ("charge_now", ("payments.add_paymentattempt",)),
        )
    },
    # the customer page's quick actions (issue 18)
    **{
        f"customers_customer_{name}": (lambda rows: {"customer_id": _row(rows, "customers.Customer").pk}, needs)
        for name, needs in (
            ("record_payment", ("payments.add_payment",)),
            ("adjust_credit", ("payments.add_creditledgerentry",)),
            ("statement", ("customers.view_customer", "notifications.add_outboundemail")),
            ("invite_portal", ("customers.change_customer",)),
            ("check_vat", ("customers.change_customer",)),
            ("send_method_link", ("payments.add_paymentmethod",)),
        )
    },
    # quotes (issue 25)
    **{
        f"invoicing_quote_{name}": (lambda rows: {"quote_id": _row(rows, "invoicing.Quote").pk}, needs)
        for name, needs in (
            ("send", ("invoicing.change_quote",)),
            ("withdraw", ("invoicing.change_quote",)),
            ("convert", ("invoicing.change_quote",)),
            ("pdf", ("invoicing.view_quote",)),
        )
    },
    "invoicing_invoice_pdf": (
        lambda rows: {"invoice_id": _row(rows, "invoicing.Invoice").pk},
        ("invoicing.view_invoice",),
    ),
    # an issued invoice of a customer who takes e-invoices (the demo seed has four)
    "invoicing_invoice_einvoice": (
        lambda rows: {"invoice_id": _einvoice_invoice().pk},
        ("invoicing.change_invoice",),
    ),
    "invoicing_invoice_preview": (
        lambda rows: {"invoice_id": _row(rows, "invoicing.Invoice").pk},
        ("invoicing.view_invoice",),
    ),
    "invoicing_invoice_accounting_export": (
        lambda rows: {},
        ("invoicing.view_invoice", "invoicing.view_creditnote", "payments.view_payment"),
    ),
    "invoicing_creditnote_pdf": (
        lambda rows: {"credit_note_id": _row(rows, "invoicing.CreditNote").pk},
        ("invoicing.view_creditnote",),
    ),
    # a later rendering of a read-only credit note's PDF: whoever may change invoices
    "invoicing_creditnote_pdf_new_version": (
        lambda rows: {"credit_note_id": _row(rows, "invoicing.CreditNote").pk},
        ("invoicing.change_invoice",),
    ),
    "payments_payment_refund": (lambda rows: {"pk": _row(rows, "payments.Payment").pk}, ("payments.refund_payment",)),
    "payments_banktransaction_assign": (
        lambda rows: {"pk": _row(rows, "payments.BankTransaction").pk},
        ("payments.add_payment",),
    ),
    "payments_banktransaction_ignore": (
        lambda rows: {"pk": _row(rows, "payments.BankTransaction").pk},
        ("payments.add_payment",),
    ),
    "payments_bankstatement_import": (lambda rows: {}, ("payments.add_payment",)),
    # the wallet page's buttons (prepaid credits, issue 25)
    **{
        f"payments_wallet_{name}": (lambda rows: {"wallet_id": _row(rows, "payments.Wallet").pk}, needs)
        for name, needs in (
            ("grant", ("payments.grant_wallet",)),
            ("top_up", ("payments.top_up_wallet",)),
            ("refund", ("payments.refund_wallet",)),
        )
    },
    "customers_customer_import": (lambda rows: {}, ("customers.add_customer", "customers.change_customer")),
    "subscriptions_usageevent_import": (lambda rows: {}, ("subscriptions.add_usageevent",)),
    # the subscription page's operations (issue 18)
    **{
        f"subscriptions_subscription_{name}": (
            lambda rows: {"object_id": _row(rows, "subscriptions.Subscription").pk},
            ("subscriptions.change_subscription",),
        )
        for name in (
            "change_plan",
            "coupon",
            "cancel_at_period_end",
            "undo_cancel",
            "pause",
            "resume",
            "extend_trial",
            "bill_now",
            "cancel_now",
        )
    },
    "subscriptions_subscription_coupon_remove": (
        lambda rows: _subscription_discount(),
        ("subscriptions.change_subscription",),
    ),
    "customers_customer_bill_now": (
        lambda rows: {"object_id": _row(rows, "customers.Customer").pk},
        ("subscriptions.change_subscription",),
    ),
    "auth_user_password_change": (lambda rows: {"id": _row(rows, "auth.User").pk}, ("auth.change_user",)),
    "reports": (lambda rows: {}, ("invoicing.view_invoice",)),
    "forecast": (lambda rows: {}, ("invoicing.view_invoice",)),
    "customers_customer_simulate": (
        lambda rows: {"customer_id": _row(rows, "customers.Customer").pk},
        ("customers.view_customer", "invoicing.view_invoice"),
    ),
    "forecast_compare": (lambda rows: {}, ("invoicing.view_invoice",)),
    # Every staff member sets up and verifies their own second factor (billing_project.staff_auth).
    "otp_setup": (lambda rows: {}, ()),
    "otp_verify": (lambda rows: {}, ()),
    # django-otp's secret and QR code of a device: refused to everyone (OTP_ADMIN_HIDE_SENSITIVE_DATA).
    "otp_totp_totpdevice_config": (
        lambda rows: {"pk": _row(rows, "otp_totp.TOTPDevice").pk},
        ("otp_totp.view_totpdevice", "otp_totp.change_totpdevice"),
    ),
    "otp_totp_totpdevice_qrcode": (
        lambda rows: {"pk": _row(rows, "otp_totp.TOTPDevice").pk},
        ("otp_totp.view_totpdevice", "otp_totp.change_totpdevice"),
    ),
    "report": (lambda rows: {"slug": "ageing"}, ("invoicing.view_invoice",)),
    # "Run now" on the periodic jobs page (issue 19): billing admins only
    "billing_project_schedule_run": (
        lambda rows: {"object_id": _row(rows, "billing_project.Schedule").pk},
        ("billing_project.run_schedule",),
    ),
    # outgoing webhooks (docs/WEBHOOKS.md): a new signing secret, a delivery sent again
    "webhooks_webhookendpoint_rotate": (
        lambda rows: {"object_id": _row(rows, "webhooks.WebhookEndpoint").pk},
        ("webhooks.rotate_secret_webhookendpoint",),
    ),
    # the ledger sync: Connect (a confirmation page, then the provider) and the OAuth callback
    "accounting_ledgerconnection_connect": (
        lambda rows: {"provider": "xero"},
        ("accounting.connect_ledgerconnection",),
    ),
    "accounting_ledgerconnection_callback": (
        lambda rows: {"provider": "xero"},
        ("accounting.connect_ledgerconnection",),
    ),
    "webhooks_webhookdelivery_resend": (
        lambda rows: {"object_id": _row(rows, "webhooks.WebhookDelivery").pk},
        ("webhooks.resend_webhookdelivery",),
    ),
}


def _subscription_discount() -> dict[str, int]:
    from subscriptions.models import Discount

    discount = Discount.objects.filter(subscription__isnull=False).order_by("pk").first()
    assert discount is not None and discount.subscription_id is not None, "the demo has a subscription's coupon"
    return {"object_id": discount.subscription_id, "discount_id": discount.pk}


def _row(rows: dict[type[Model], Model], label: str) -> Model:
    return next(row for model, row in rows.items() if model._meta.label == label)


def _process_screen_names() -> set[str]:
    standard = {
        f"{model._meta.app_label}_{model._meta.model_name}{suffix}"
        for model, _model_admin in _registry()
        for suffix in STANDARD_SUFFIXES
    }
    names = set()
    for _route, pattern in _admin_patterns():
        name = pattern.name or ""
        if name and name not in SITE_URLS | standard and name != "view_on_site":
            names.add(name)
    return names


def test_every_process_screen_is_listed_with_its_permission() -> None:
    assert _process_screen_names() == set(PROCESS_SCREENS), "a custom admin URL was added: list its permission here"


def _refused(response: Any, url: str) -> bool:
    """A 403, or (the customer import's way) a redirect away from the screen."""
    return response.status_code == 403 or (response.status_code == 302 and response["Location"] != url)


def _render_pdfs(rows: dict[type[Model], Model]) -> None:
    """Archive the PDFs first: downloading one archives it when it has none, which is not a change. The module's
    seed archived them under another test's media root (each test has its own): those rows go, inside this
    test's transaction, so the download archives them here."""
    from invoicing.documents import credit_note_pdf_bytes, invoice_pdf_bytes
    from invoicing.models import DocumentPdf

    DocumentPdf.objects.filter(
        Q(invoice=_row(rows, "invoicing.Invoice")) | Q(credit_note=_row(rows, "invoicing.CreditNote"))
    ).delete()

    invoice_pdf_bytes(invoice_id=_row(rows, "invoicing.Invoice").pk)
    credit_note_pdf_bytes(credit_note_id=_row(rows, "invoicing.CreditNote").pk)
    from invoicing.einvoice.service import einvoice_store
    from invoicing.models import EInvoiceFile

    EInvoiceFile.objects.filter(invoice=_einvoice_invoice()).delete()
    einvoice_store(invoice=_einvoice_invoice())


def _einvoice_invoice() -> Any:
    from invoicing.models import Invoice

    invoice = (
        Invoice.objects.finalized().filter(customer_snapshot__einvoice_format="xrechnung_ubl").order_by("pk").first()
    )
    assert invoice is not None, "the demo seed bills a customer who takes XRechnung"
    return invoice


def test_process_screens_refuse_roles_without_their_permission(every_model: dict) -> None:
    _render_pdfs(every_model)
    roles = (BILLING_ADMIN, BILLING_CLERK, AUDITOR, "staff without group")
    users = {role: _user(role) for role in roles}
    clients = {role: _client(user) for role, user in users.items()}
    before = db_digest(exclude=VOLATILE)
    refusals = 0
    for role in roles:
        user, client = users[role], clients[role]
        for name, (kwargs_of, needs) in PROCESS_SCREENS.items():
            url = reverse(f"admin:{name}", kwargs=kwargs_of(every_model) or None)
            allowed = user.has_perms(needs)
            response = client.get(url)
            if allowed:
                assert response.status_code == 200, (role, name, response.status_code)
                continue
            assert _refused(response, url), (role, name, response.status_code)
            data = {
                "reason": "x",
                "amount": "1.00",
                "customer": "1",
                "invoice": "x",
                "password1": "x",
                "password2": "x",
            }
            assert _refused(client.post(url, data), url), (role, name)
            refusals += 1
    assert changed_tables(before, db_digest(exclude=VOLATILE)) == []
    assert refusals > 20


# --- CSRF -----------------------------------------------------------------------------------------------

# The only views that take a POST without a CSRF token: webhooks, which authenticate the sender instead
# (an HMAC signature of the body, or the provider's basic auth; see test_security_webhooks.py), and the REST API,
# which authenticates by an API key in the Authorization header and never by the session cookie (a browser's
# staff session gets 401 there: tests/api/test_auth.py) — /api/v1/webhook_endpoints (webhooks.api) included.
CSRF_EXEMPT_MODULES = (
    "payments.views",
    "anymail.webhooks.",
    "api.",
    "webhooks.api",
    "rest_framework.",
    "drf_spectacular.",
)


def _all_patterns() -> Iterator[tuple[str, URLPattern]]:
    def walk(patterns: list[Any], prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                yield prefix + str(pattern.pattern), pattern

    yield from walk(get_resolver().url_patterns, "")


def test_no_view_outside_the_webhooks_is_csrf_exempt() -> None:
    exempt = {
        route: pattern.callback.__module__
        for route, pattern in _all_patterns()
        if getattr(pattern.callback, "csrf_exempt", False)
        or getattr(getattr(pattern.callback, "view_class", None), "csrf_exempt", False)
    }
    assert exempt, "the webhook views are csrf-exempt; finding none means this check looks in the wrong place"
    unexpected = {route: module for route, module in exempt.items() if not module.startswith(CSRF_EXEMPT_MODULES)}
    assert unexpected == {}
    assert "webhooks/<slug:gateway>/" in exempt


def _sample_url(route: str, pattern: URLPattern) -> str | None:
    """A concrete URL for an admin route (ids of rows that need not exist: the CSRF check runs first)."""
    if pattern.name is None or route.endswith("(?P<url>.*)$"):
        return None
    kwargs = {key: ("ageing" if key == "slug" else "1") for key in pattern.pattern.converters}
    if pattern.name == "app_list":
        kwargs = {"app_label": "invoicing"}
    elif not kwargs and "(?P<" in route:
        return None
    return reverse(f"admin:{pattern.name}", kwargs=kwargs or None)


def test_every_admin_url_refuses_a_post_without_csrf_token(db: Any) -> None:
    client = _client(User.objects.create_superuser("root-csrf", "root@example.com", "pw"), enforce_csrf_checks=True)
    before = db_digest(exclude=VOLATILE)
    urls = [url for route, pattern in _admin_patterns() if (url := _sample_url(route, pattern))]
    assert len(urls) > 150
    for url in urls:
        response = client.post(url, {"action": "delete_selected", "_selected_action": ["1"], "post": "yes"})
        assert response.status_code == 403 and b"CSRF" in response.content, (url, response.status_code)
    anonymous = Client(enforce_csrf_checks=True)
    login = anonymous.post(reverse("admin:login"), {"username": "root-csrf", "password": "pw"})
    assert login.status_code == 403
    assert changed_tables(before, db_digest(exclude=VOLATILE)) == []
    assert connection.queries_log is not None
