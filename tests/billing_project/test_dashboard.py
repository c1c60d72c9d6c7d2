"""The admin home dashboard: exact figures on a small known dataset, links to existing changelist filters,
permissions and a bounded number of queries."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from djmoney.money import Money

from invoicing.models import BillingRun, BillingRunError
from invoicing.services import credit_note_issue, invoice_mark_paid, invoice_void
from notifications.models import EmailAddressStatus, OutboundEmail
from payments.models import BankTransactionStatus, PaymentAttempt
from reporting import dashboard, metrics
from reporting.charts import Bar, bar_chart
from subscriptions.models import PricingModel
from subscriptions.services import subscription_cancel
from tests.factories import (
    BankTransactionFactory,
    CustomerFactory,
    InvoiceFactory,
    NumberSeriesFactory,
    PriceFactory,
    ProductFactory,
    StaffUserFactory,
    SubscriptionFactory,
    TaxRateFactory,
    tiered_price,
)

D = Decimal
TODAY = dt.date(2026, 4, 15)

pytestmark = pytest.mark.django_db


def _line(amount: str, price=None) -> dict:
    spec = {"description": "Service", "unit_amount": D(amount)}
    if price is not None:
        spec.update(price=price, amount=D(amount))  # catalog lines carry their computed amount
    return spec


@pytest.fixture
def dataset(db, time_machine):
    """Six live subscriptions (one metered), one canceled this month; eight invoices (one draft, one void, one
    paid, one credited) for four customers in EUR and USD; two billing runs; payment attempts; e-mail
    statuses; bank transactions. "Today" is 2026-04-15 in the billing timezone. Expected figures are worked
    out in the comments."""
    time_machine.move_to(dt.datetime(2026, 4, 15, 10, 0, tzinfo=dt.UTC), tick=False)
    NumberSeriesFactory(default_invoices=True)
    NumberSeriesFactory(default_credit_notes=True)
    TaxRateFactory(country="DE", percentage=D("19"))
    basic = PriceFactory(product=ProductFactory(name="Basic"), unit_amount=Money(D("31.00"), "EUR"))
    pro = PriceFactory(
        product=ProductFactory(name="Pro"),
        unit_amount=Money(D("120.00"), "EUR"),
        interval="year",
        pricing_model=PricingModel.PER_UNIT,
    )
    SubscriptionFactory(price=basic, start_date=dt.date(2026, 1, 1))  # MRR 31.00
    SubscriptionFactory(price=pro, quantity=3, start_date=dt.date(2026, 2, 10))  # 360 / 12 = 30.00
    weekly = PriceFactory(unit_amount=Money(D("10.00"), "USD"), interval="week")
    SubscriptionFactory(price=weekly, start_date=dt.date(2026, 4, 2))  # USD 10 × 52 / 12 = 43.33, new
    graduated = tiered_price(model=PricingModel.GRADUATED, tiers=[(10, "2", "0"), (None, "1", "5")])
    SubscriptionFactory(price=graduated, quantity=15, start_date=dt.date(2026, 4, 1))  # 20 + 5 + 5 = 30.00, new
    quarterly = PriceFactory(unit_amount=Money(D("90.00"), "EUR"), interval_count=3)
    SubscriptionFactory(price=quarterly, start_date=dt.date(2026, 3, 1))  # 90 / 3 = 30.00
    metered = PriceFactory(metered=True, unit_amount=Money(D("0.01"), "EUR"))
    SubscriptionFactory(price=metered, start_date=dt.date(2026, 3, 1))  # active, no MRR
    canceled = SubscriptionFactory(
        price=PriceFactory(unit_amount=Money(D("50.00"), "EUR")), start_date=dt.date(2026, 3, 10)
    )
    subscription_cancel(subscription=canceled, as_of=dt.date(2026, 4, 5))  # churned this month

    alpha = CustomerFactory(name="Alpha GmbH")
    beta = CustomerFactory(name="Beta AG")
    gamma = CustomerFactory(name="=SUM(A1)")  # a formula, to prove the CSV neutralises it
    delta = CustomerFactory(name="Delta Inc", currency="USD")
    invoices = SimpleNamespace(
        # 100 + 19 % = 119.00, due 04-24: current
        current=InvoiceFactory(customer=alpha, lines=[_line("100.00", basic)], finalized=dt.date(2026, 4, 10)),
        # 238.00 − credit note 23.80 = 214.20 due on 04-03: 12 days past due
        days_12=InvoiceFactory(customer=beta, lines=[_line("200.00", pro)], finalized=dt.date(2026, 3, 20)),
        # 59.50 due on 02-15: 59 days past due
        days_59=InvoiceFactory(customer=beta, lines=[_line("50.00")], finalized=dt.date(2026, 2, 1)),
        # 11.90 due on 2025-12-15: 121 days past due
        days_121=InvoiceFactory(customer=gamma, lines=[_line("10.00")], finalized=dt.date(2025, 12, 1)),
        # 357.00, paid today
        paid=InvoiceFactory(customer=gamma, lines=[_line("300.00")], finalized=dt.date(2026, 3, 2)),
        # 1190.00, void: no revenue, nothing due
        void=InvoiceFactory(customer=alpha, lines=[_line("1000.00")], finalized=dt.date(2026, 3, 5)),
        # USD 95.20 due on 01-24: 81 days past due
        usd_days_81=InvoiceFactory(customer=delta, lines=[_line("80.00")], finalized=dt.date(2026, 1, 10)),
        draft=InvoiceFactory(customer=alpha, lines=[_line("500.00")]),
    )
    invoice_mark_paid(invoice=invoices.paid)
    invoice_void(invoice=invoices.void)
    credit_note_issue(invoice=invoices.days_12, reason="goodwill", amount=D("23.80"), issue_date=dt.date(2026, 4, 12))

    now = timezone.now()
    BillingRun.objects.create(started_at=now - dt.timedelta(days=45), as_of=dt.date(2026, 3, 1), status="succeeded")
    last = BillingRun.objects.create(
        started_at=now - dt.timedelta(days=14),
        as_of=dt.date(2026, 4, 1),
        status="partial",
        invoices_created=4,
        failed=2,
    )
    BillingRunError.objects.create(run=last, subscription_id=1, message="boom")
    BillingRunError.objects.create(run=last, subscription_id=2, message="bang")
    BillingRun.objects.create(started_at=now, as_of=TODAY, status="succeeded", dry_run=True)

    for number, (on, status) in enumerate(
        [
            (dt.date(2026, 4, 10), "failed"),
            (dt.date(2026, 3, 17), "failed"),  # 29 days ago: counted
            (dt.date(2026, 3, 16), "failed"),  # 30 days ago: not counted
            (dt.date(2026, 4, 14), "processing"),
        ],
        start=1,
    ):
        PaymentAttempt.objects.create(
            invoice=invoices.days_12,
            customer=beta,
            attempt_number=number,
            attempted_on=on,
            currency="EUR",
            amount=D("238.00"),
            status=status,
            gateway="sandbox",
        )
    EmailAddressStatus.objects.create(email="a@example.com", bounced_at=now)
    EmailAddressStatus.objects.create(email="b@example.com", bounced_at=now)
    EmailAddressStatus.objects.create(email="c@example.com", complained_at=now)
    # failed e-mails of the last 30 days (from 2026-03-17 00:00 Berlin): only the first counts
    berlin = ZoneInfo("Europe/Berlin")
    for key, status, failed_at in (
        ("in", "failed", dt.datetime(2026, 3, 17, 0, 30, tzinfo=berlin)),
        ("before", "failed", dt.datetime(2026, 3, 16, 23, 30, tzinfo=berlin)),
        ("queued", "queued", None),
    ):
        OutboundEmail.objects.create(
            kind="invoice",
            idempotency_key=f"dashboard-{key}",
            customer=alpha,
            from_email="billing@example.com",
            to_emails=["alpha@example.com"],
            subject="Invoice",
            body_text="Invoice",
            template="invoice",
            status=status,
            queued_at=now,
            failed_at=failed_at,
        )
    BankTransactionFactory(status=BankTransactionStatus.UNMATCHED)
    BankTransactionFactory(status=BankTransactionStatus.AMBIGUOUS)
    BankTransactionFactory(status=BankTransactionStatus.IGNORED)
    return invoices


def test_revenue_by_month_is_net_of_tax_without_void_and_drafts(dataset):
    metrics.metrics_refresh(as_of=TODAY)
    revenue = metrics.revenue_by_month(as_of=TODAY)
    assert set(revenue) == {"EUR", "USD"}
    assert [month for month, _ in revenue["EUR"]] == [dt.date(2025, m, 1) for m in range(5, 13)] + [
        dt.date(2026, m, 1) for m in range(1, 5)
    ]
    assert {month: amount for month, amount in revenue["EUR"] if amount} == {
        dt.date(2025, 12, 1): D("10.00"),
        dt.date(2026, 2, 1): D("50.00"),
        dt.date(2026, 3, 1): D("500.00"),
        dt.date(2026, 4, 1): D("100.00"),
    }
    assert {month: amount for month, amount in revenue["USD"] if amount} == {dt.date(2026, 1, 1): D("80.00")}


def test_receivables_ageing_buckets(dataset):
    ageing = metrics.receivables_ageing(as_of=TODAY)
    assert ageing["EUR"].amounts == {
        "current": D("119.00"),
        "1-30": D("214.20"),
        "31-60": D("59.50"),
        "61-90": D("0.00"),
        "90+": D("11.90"),
    }
    assert (ageing["EUR"].overdue_count, ageing["EUR"].overdue_amount) == (3, D("285.60"))
    assert ageing["USD"].amounts["61-90"] == D("95.20")
    assert (ageing["USD"].overdue_count, ageing["USD"].overdue_amount) == (1, D("95.20"))


def test_operations_figures(dataset):
    run = dashboard.last_billing_run()
    assert (run.as_of, run.error_count) == (dt.date(2026, 4, 1), 2)
    assert dashboard.operations_counts(as_of=TODAY) == {
        "failed_attempts": 2,
        "bounced_addresses": 2,
        "failed_emails": 1,
        "unreconciled_transactions": 2,
        "interrupted_runs": 0,
        "active_subscriptions": 6,  # 5 licensed + 1 metered
    }


def test_dashboard_page_shows_the_figures_in_a_bounded_number_of_queries(
    dataset, admin_client, django_assert_max_num_queries
):
    metrics.metrics_refresh(as_of=TODAY)
    # session, user, the latest metrics refresh, MRR months, revenue months, ageing, last run, operations (one
    # round trip for six counts), the last integrity check, the "Metrics refresh" job (Refresh now), recent actions,
    # one per alert provider (disabled webhook endpoints, open payment disputes, rejected VAT numbers, the seller
    # profile's country)
    with django_assert_max_num_queries(15):
        response = admin_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "3 · €285.60",  # overdue EUR: count and amount due, as money
        "Revenue this month (net) · EUR",
        "€100.00",  # April's revenue
        "last month €500.00 (-80.0 %)",
        "2026-04-01 · Finished with errors",
        "4 invoices, 2 errors",
        'href="?currency=USD"',
        "Revenue by issue month (net)",
        "Receivables ageing (days past due)",
        "<title>Revenue EUR by issue month (net, finalized invoices)</title>",
        'id="content-main"',  # the app list is still there
    ):
        assert text in html, text
    assert "<title>Revenue USD" not in html  # one currency at a time


def test_every_dashboard_link_opens_a_changelist_with_the_same_count(dataset, admin_client):
    metrics.metrics_refresh(as_of=TODAY)
    context = admin_client.get("/admin/").context["dashboard"]
    panels = {panel["currency"]: panel for panel in context["panels"]}
    figures = {figure.label: figure for figure in context["operations_figures"]}
    for currency, panel in panels.items():
        figures.update({f"{figure.label} {currency}": figure for figure in panel["figures"]})
    expected_counts = {
        "Active subscriptions": 6,
        "Overdue invoices EUR": 3,
        "Overdue invoices USD": 1,
        "Revenue this month (net) EUR": 1,  # April: the current invoice
        "Failed payment attempts (30 days)": 2,
        "Bounced e-mail addresses": 2,
        "Failed e-mails (30 days)": 1,
        "Bank transactions to reconcile": 2,
    }
    for label, count in expected_counts.items():
        response = admin_client.get(figures[label].url)
        assert response.status_code == 200, label  # an unknown filter would redirect with ?e=1
        assert response.context["cl"].result_count == count, label
    for label, count, url in panels["EUR"]["ageing_links"]:
        assert admin_client.get(url).context["cl"].result_count == count, label
    assert admin_client.get(figures["MRR EUR"].url).status_code == 200  # the MRR report of the month
    assert admin_client.get(panels["EUR"]["revenue_report"]).status_code == 200
    run_page = admin_client.get(figures["Last billing run"].url)
    assert run_page.status_code == 200


def _staff(*codenames: str):
    user = StaffUserFactory()
    user.save()  # the factory sets the password after saving: keep the session's auth hash valid
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_staff_without_invoice_permission_sees_the_app_list_only(dataset, client):
    client.force_login(_staff())
    response = client.get("/admin/")
    assert response.status_code == 200
    assert "dashboard" not in response.context
    assert "billing-dashboard" not in response.content.decode()


def test_staff_with_invoice_view_permission_gets_links_only_where_they_may_look(dataset, client):
    client.force_login(_staff("view_invoice"))
    context = client.get("/admin/").context["dashboard"]
    overdue = next(figure for figure in context["panels"][0]["figures"] if figure.label == "Overdue invoices")
    active = context["operations_figures"][0]
    assert overdue.url is not None
    assert active.url is None  # no view permission on subscriptions: a number, not a link to a 403


def test_bar_chart_is_accessible_svg_with_escaped_labels():
    svg = str(
        bar_chart(
            title="Revenue <EUR>",
            bars=[Bar("Jan", D("50.00"), "50.00 EUR"), Bar("<b>", D("100.00"), "100.00 EUR"), Bar("Mar", D(0), "0")],
        )
    )
    assert svg.startswith("<svg") and 'role="img"' in svg
    assert "<title>Revenue &lt;EUR&gt;</title>" in svg
    assert "&lt;b&gt;" in svg and "<b>" not in svg
    assert re.findall(r'<rect [^>]*width="(\d+)"', svg) == ["100", "200", "0"]
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_currencies_put_the_house_currency_first(dataset, admin_user, settings):
    assert dashboard.dashboard_context(as_of=TODAY, user=admin_user)["currencies"] == ["EUR", "USD"]
    settings.DEFAULT_CURRENCY = "USD"
    assert dashboard.dashboard_context(as_of=TODAY, user=admin_user)["currencies"] == ["USD", "EUR"]
