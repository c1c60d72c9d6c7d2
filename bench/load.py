"""Portal and admin under wrk while billing runs: prints figures (see docs/PERFORMANCE.md, "Load").

    .venv/bin/python bench/load.py [--seconds 60] [--customers 300] [--invoices 6000] [--subscriptions 500]
                                   [--database billing_load] [--template DB] [--workers 2] [--threads 4]
                                   [--json] [--keep]

1. Re-creates its own PostgreSQL database (``--database``, dropped at the end unless ``--keep``; a copy of
   ``--template``, a migrated database, when given), migrates it and fills it: ``seed_scale`` customers and
   invoices with two lines each, a staff superuser, a portal user whose customer has invoices, and
   ``--subscriptions`` monthly subscriptions for the billing loop.
2. Starts gunicorn (gthread workers) on 127.0.0.1 with a free port, signs a staff user in through the admin login
   form and a portal user through the portal's e-mail link (the confirmation POST), and checks that every page of
   the mix answers 200 with those cookies.
3. For ``--seconds`` (env LOAD_SECONDS, default 60) runs two wrk processes at once — the admin mix (dashboard,
   invoice list, invoice change page, customer list, a search) and the portal mix (overview, invoice list,
   invoice page, PDF download) — WHILE a billing loop runs ``billing_run`` month after month over the
   subscriptions (inline chunks of 100, after-finalize hooks off as in bench/billing_run.py).
4. Prints requests, errors (non-2xx/3xx, socket errors, timeouts), redirects and p50/p95/p99 per surface, and
   checks that the billing loop did its work exactly once: one invoice per subscription and month, gapless
   numbers, every run succeeded. ``--json`` prints the figures as one JSON object (tests/reliability/test_load.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.cookiejar
import io
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
LUA_SCRIPT = ROOT / "bench" / "load.lua"
STAFF_USERNAME = "load-admin"
STAFF_PASSWORD = "load-admin-password-1"  # noqa: S105 - a throwaway database's throwaway account
BILLING_START = dt.date(2026, 1, 1)


def configure(database: str, media_root: Path) -> dict[str, str]:
    """The environment of this process (the billing loop) and of gunicorn: the normal settings module against
    the load database, tasks and e-mail kept local, no PDFs or e-mails after billing (as bench/billing_run.py)."""
    static_root = media_root.parent / "static"
    static_root.mkdir(parents=True, exist_ok=True)
    values = {
        "DJANGO_SETTINGS_MODULE": "billing_project.settings",
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{database}",
        "DEBUG": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "MEDIA_ROOT": str(media_root),
        "STATIC_ROOT": str(static_root),
        "EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "CELERY_BROKER_URL": "memory://",
        "CELERY_TASK_ALWAYS_EAGER": "true",
        "BILLING_AFTER_FINALIZE_HOOKS": "false",
        # gunicorn serves billing_project.wsgi, which refuses the development profile with DEBUG off unless told
        # this is a measurement (billing_project/deployment.py).
        "ALLOW_BASE_SETTINGS_WITHOUT_DEBUG": "true",
    }
    os.environ.update(values)
    return values


def recreate_database(name: str, template: str = "") -> None:
    """An empty database, or a copy of ``template`` (a migrated database nobody is connected to: the test suite's,
    tests/databases.py), so that ``migrate`` finds nothing left to do."""
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- data -----------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    customers: int
    invoices: int
    invoice_lines: int
    subscription_ids: list[int]
    portal_email: str
    portal_numbers: list[str]
    admin_invoice_id: int
    search_number: str


def fill(*, customers: int, invoices: int, subscriptions: int) -> Dataset:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from djmoney.money import Money

    from customers.models import Customer, PortalUser, SellerProfile
    from invoicing.models import Invoice, InvoiceLine, TaxRate
    from subscriptions.models import Price, Product, Subscription, SubscriptionItem
    from subscriptions.services import ItemSpec, subscription_create

    call_command("migrate", verbosity=0)
    call_command("seed_scale", customers=customers, invoices=invoices, stdout=io.StringIO())
    # a German seller: without a country on the profile the billing loop's invoices would be held for review
    SellerProfile.objects.filter(country="").update(country="DE")
    TaxRate.objects.get_or_create(country="DE", region="", active=True, defaults={"name": "VAT 19 %", "percentage": 19})
    staff = User.objects.create_superuser(STAFF_USERNAME, "load-admin@example.com", STAFF_PASSWORD)
    # staff sign in with a second factor (billing_project/staff_auth.py): the load's admin has an authenticator
    from django_otp.plugins.otp_totp.models import TOTPDevice

    TOTPDevice.objects.create(user=staff, name="load test", confirmed=True)

    # the portal user: a customer with open invoices (the seed gives each customer invoices of one status)
    open_invoice = Invoice.objects.filter(status="open").order_by("pk").select_related("customer").first()
    assert open_invoice is not None
    portal_customer = open_invoice.customer
    PortalUser.objects.create(customer=portal_customer, email=portal_customer.email)
    portal_numbers = list(
        Invoice.objects.filter(customer=portal_customer)
        .exclude(number="")
        .exclude(status="void")
        .order_by("-issue_date")
        .values_list("number", flat=True)[:3]
    )
    admin_invoice = Invoice.objects.exclude(number="").order_by("pk")[invoices // 2]

    # the billing loop's subscriptions: one created through the service, the rest copied from it in bulk
    product = Product.objects.create(name="Load plan")
    plan = Price.objects.create(product=product, unit_amount=Money(Decimal("29.00"), "EUR"))
    seats = Price.objects.create(product=product, unit_amount=Money(Decimal("9.50"), "EUR"), pricing_model="per_unit")
    billed = Customer.objects.bulk_create(
        [
            Customer(name=f"Load customer {n}", email=f"load{n}@load.example", country="DE", currency="EUR")
            for n in range(subscriptions)
        ]
    )
    template = subscription_create(
        customer=billed[0], items=[ItemSpec(price=plan, quantity=1), ItemSpec(price=seats, quantity=2)],
        start_date=BILLING_START,
    )  # fmt: skip
    items = list(template.items.all())
    copies = []
    for customer in billed[1:]:
        copy = Subscription.objects.get(pk=template.pk)
        copy.pk = None
        copy.customer = customer
        copies.append(copy)
    created = Subscription.objects.bulk_create(copies)
    SubscriptionItem.objects.bulk_create(
        [SubscriptionItem(subscription=s, price_id=i.price_id, quantity=i.quantity) for s in created for i in items]
    )
    return Dataset(
        customers=Customer.objects.count(),
        invoices=Invoice.objects.count(),
        invoice_lines=InvoiceLine.objects.count(),
        subscription_ids=[template.pk, *(s.pk for s in created)],
        portal_email=portal_customer.email,
        portal_numbers=portal_numbers,
        admin_invoice_id=admin_invoice.pk,
        search_number=admin_invoice.number,
    )


# --- the server and signing in --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gunicorn(*, port: int, workers: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "gunicorn", "billing_project.wsgi:application",
        "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--threads", str(threads),
        "--worker-class", "gthread", "--timeout", "120", "--error-logfile", str(log), "--log-level", "warning",
    ]  # fmt: skip
    return subprocess.Popen(
        command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )


def wait_until_up(base: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer /healthz")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _browser() -> tuple[urllib.request.OpenerDirector, http.cookiejar.CookieJar]:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    return opener, jar


def _open(opener: urllib.request.OpenerDirector, url: str, data: dict[str, str] | None = None) -> tuple[int, str]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body, headers={"Referer": url})  # noqa: S310 - loopback
    try:
        with opener.open(request, timeout=30) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:  # 3xx (not followed) and 4xx/5xx
        return exc.code, exc.read().decode("utf-8", "replace")


def _csrf(jar: http.cookiejar.CookieJar) -> str:
    return next(cookie.value for cookie in jar if cookie.name == "csrftoken" and cookie.value)


def _cookie_header(jar: http.cookiejar.CookieJar) -> str:
    return "; ".join(f"{cookie.name}={cookie.value}" for cookie in jar if cookie.value)


def staff_login(base: str) -> str:
    """Sign in through the admin's login form; returns the Cookie header of the session."""
    opener, jar = _browser()
    _open(opener, f"{base}/admin/login/")
    status, _ = _open(
        opener,
        f"{base}/admin/login/?next=/admin/",
        {"username": STAFF_USERNAME, "password": STAFF_PASSWORD, "csrfmiddlewaretoken": _csrf(jar), "next": "/admin/"},
    )
    if status != 302:
        raise RuntimeError(f"admin login answered {status}")
    # the second factor, as a person types it from their authenticator app
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user__username=STAFF_USERNAME)
    _open(opener, f"{base}/admin/otp/verify/?next=/admin/")
    code = f"{TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift).token():0{device.digits}d}"
    status, _ = _open(
        opener,
        f"{base}/admin/otp/verify/?next=/admin/",
        {"code": code, "csrfmiddlewaretoken": _csrf(jar), "next": "/admin/"},
    )
    if status != 302:
        raise RuntimeError(f"admin second factor answered {status}")
    return _cookie_header(jar)


def portal_login(base: str, email: str) -> str:
    """Sign in as the customer would: a login link (the token the e-mail carries), its confirmation page, the
    POST that consumes it. Returns the Cookie header of the portal session."""
    from customers.portal_services import portal_login_request

    link = portal_login_request(email=email, ip="127.0.0.1")
    assert link is not None
    opener, jar = _browser()
    url = f"{base}/portal/login/{link.token}/"
    status, _ = _open(opener, url)
    if status != 200:
        raise RuntimeError(f"portal login page answered {status}")
    status, _ = _open(opener, url, {"csrfmiddlewaretoken": _csrf(jar)})
    if status != 302:
        raise RuntimeError(f"portal login answered {status}")
    return _cookie_header(jar)


def page_medians(base: str, cookie: str, paths: list[str], repeat: int = 3) -> dict[str, float]:
    """Milliseconds per page, one request at a time (median of ``repeat``): what each page of a mix costs."""
    opener = urllib.request.build_opener(_NoRedirect())
    medians = {}
    for path in paths:
        timings = []
        for _ in range(repeat):
            request = urllib.request.Request(f"{base}{path}", headers={"Cookie": cookie})  # noqa: S310 - loopback
            started = time.perf_counter()
            with opener.open(request, timeout=60) as response:
                response.read()
            timings.append((time.perf_counter() - started) * 1000)
        medians[path] = round(statistics.median(timings), 1)
    return medians


def check_pages(base: str, cookie: str, paths: list[str]) -> None:
    """Every page of a mix answers 200 with the session (not a redirect to a login page)."""
    opener = urllib.request.build_opener(_NoRedirect())
    for path in paths:
        request = urllib.request.Request(f"{base}{path}", headers={"Cookie": cookie})  # noqa: S310 - loopback
        try:
            with opener.open(request, timeout=60) as response:
                status = response.status
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
        if status != 200:
            raise RuntimeError(f"{path} answered {status} before the load started")


# --- wrk ------------------------------------------------------------------------------------------------


def start_wrk(*, base: str, paths: list[str], cookie: str, seconds: int, connections: int) -> subprocess.Popen[str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    return subprocess.Popen(
        [wrk, "-t", "1", "-c", str(connections), "-d", f"{seconds}s", "--timeout", "30s", "-s", str(LUA_SCRIPT),
         "-H", f"Cookie: {cookie}", base],
        env={**os.environ, "LOAD_PATHS": " ".join(paths)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def wrk_result(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    output, _ = process.communicate(timeout=timeout)
    match = re.search(r"^LOAD_RESULT (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    result: dict[str, Any] = json.loads(match.group(1))
    result["errors"] = sum(
        result[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")
    )
    result["rps"] = round(result["requests"] / (result["duration_us"] / 1e6), 1)
    return result


# --- the concurrent billing -----------------------------------------------------------------------------


@dataclass
class BillingLoop:
    """``billing_run`` for one month after the other, until stopped (the current run is always completed)."""

    chunk_size: int = 100
    nice: int = 0
    runs: list[int] = field(default_factory=list)
    months: list[dt.date] = field(default_factory=list)
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="billing-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=600)

    def _loop(self) -> None:
        from django.db import connection

        from invoicing.billing_run import billing_run

        month = BILLING_START
        if self.nice:
            # Linux: nice() applies to the calling thread only, so this lowers the billing loop's CPU priority
            # and not the bench's — as a Celery worker started with `nice -n 10` would be (docs/PERFORMANCE.md).
            os.nice(self.nice)
        try:
            while not self._stop.is_set():
                run = billing_run(as_of=month, chunk_size=self.chunk_size)
                self.runs.append(run.pk)
                self.months.append(month)
                month = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        except BaseException as exc:  # reported by verify_billing
            self.error = exc
        finally:
            connection.close()


def verify_billing(loop: BillingLoop, subscription_ids: list[int]) -> dict[str, Any]:
    """Exactly once: one invoice per subscription and billed month, no gaps in the numbers, every run clean."""
    from django.db.models import Count

    from invoicing.models import BillingRun, Invoice
    from subscriptions.models import Subscription

    billed = Invoice.objects.filter(subscription_id__in=subscription_ids)
    per_subscription = dict(
        Counter(billed.values("subscription_id").annotate(n=Count("pk")).values_list("n", flat=True))
    )
    duplicates = billed.values("subscription_id", "period_key").annotate(n=Count("pk")).filter(n__gt=1).count()
    months = len(loop.months)
    expected = len(subscription_ids) * months
    gaps = []
    by_year: dict[str, list[int]] = {}
    for number in billed.values_list("number", flat=True):
        match = re.fullmatch(r"INV-(\d{4})-(\d+)", number)
        if match is None:
            gaps.append(f"unexpected number {number!r}")
            continue
        by_year.setdefault(match.group(1), []).append(int(match.group(2)))
    for year, numbers in sorted(by_year.items()):
        numbers.sort()
        if numbers != list(range(1, len(numbers) + 1)):
            gaps.append(f"{year}: {len(numbers)} numbers, highest {numbers[-1]}")
    runs = list(BillingRun.objects.filter(pk__in=loop.runs).values("status", "invoices_created", "failed"))
    next_month = (loop.months[-1].replace(day=28) + dt.timedelta(days=4)).replace(day=1) if loop.months else None
    behind = Subscription.objects.filter(pk__in=subscription_ids).exclude(next_billing_date=next_month).count()
    ok = (
        loop.error is None
        and months > 0
        and billed.count() == expected
        and per_subscription == {months: len(subscription_ids)}
        and duplicates == 0
        and not gaps
        and all(run["status"] == "succeeded" and run["failed"] == 0 for run in runs)
        and sum(run["invoices_created"] for run in runs) == expected
        and behind == 0
    )
    return {
        "exactly_once": ok,
        "runs": len(runs),
        "months": months,
        "subscriptions": len(subscription_ids),
        "invoices_expected": expected,
        "invoices_found": billed.count(),
        "invoices_created_by_runs": sum(run["invoices_created"] for run in runs),
        "duplicate_periods": duplicates,
        "number_gaps": gaps,
        "runs_not_succeeded": sum(1 for run in runs if run["status"] != "succeeded" or run["failed"]),
        "subscriptions_not_advanced": behind,
        "error": None if loop.error is None else repr(loop.error),
    }


# --- the whole measurement ------------------------------------------------------------------------------


def run_load(
    *,
    seconds: int = 60,
    database: str = "billing_load",
    template: str = "",
    customers: int = 300,
    invoices: int = 6000,
    subscriptions: int = 500,
    workers: int = 2,
    threads: int = 4,
    connections: int = 4,
    billing_nice: int = 0,
    portal_workers: int = 0,
    keep: bool = False,
    progress: Any = print,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="billing-load-"))
    configure(database, workdir / "media")
    recreate_database(database, template)
    import django

    django.setup()
    from django.db import connection

    started = time.monotonic()
    data = fill(customers=customers, invoices=invoices, subscriptions=subscriptions)
    progress(
        f"filled {database}: {data.customers:,} customers, {data.invoices:,} invoices, {data.invoice_lines:,} lines, "
        f"{len(data.subscription_ids):,} subscriptions ({time.monotonic() - started:.0f} s)"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_gunicorn(port=port, workers=workers, threads=threads, log=workdir / "gunicorn.log")
    servers = [server]
    portal_base = base
    if portal_workers:
        # The portal on a pool of its own (README, "Deployment"): a proxy routes /portal/ to it, so customers never
        # queue behind staff pages in the same processes.
        portal_port = free_port()
        portal_base = f"http://127.0.0.1:{portal_port}"
        servers.append(
            start_gunicorn(port=portal_port, workers=portal_workers, threads=threads, log=workdir / "gunicorn.log")
        )
    loop = BillingLoop(nice=billing_nice)
    try:
        for url, process in zip((base, portal_base), servers, strict=False):
            wait_until_up(url, process)
        admin_paths = [
            "/admin/",
            "/admin/invoicing/invoice/",
            f"/admin/invoicing/invoice/{data.admin_invoice_id}/change/",
            "/admin/customers/customer/",
            f"/admin/invoicing/invoice/?q={data.search_number}",
        ]
        portal_paths = ["/portal/", "/portal/invoices/"]
        for number in data.portal_numbers:
            portal_paths += [f"/portal/invoices/{number}/", f"/portal/invoices/{number}/pdf/"]
        staff_cookie = staff_login(base)
        portal_cookie = portal_login(portal_base, data.portal_email)
        check_pages(base, staff_cookie, admin_paths)
        check_pages(portal_base, portal_cookie, portal_paths)
        pages = {
            **page_medians(base, staff_cookie, admin_paths),
            **page_medians(portal_base, portal_cookie, portal_paths),
        }
        progress(f"gunicorn {workers}×{threads} on {base}; wrk {connections} connections per surface for {seconds} s")

        loop.start()
        admin = start_wrk(base=base, paths=admin_paths, cookie=staff_cookie, seconds=seconds, connections=connections)
        portal = start_wrk(
            base=portal_base, paths=portal_paths, cookie=portal_cookie, seconds=seconds, connections=connections
        )
        surfaces = {"admin": wrk_result(admin, seconds + 120), "portal": wrk_result(portal, seconds + 120)}
        loop.stop()
        # the sessions are still good after the run (a redirect during it would have been counted)
        check_pages(base, staff_cookie, admin_paths[:1])
        check_pages(portal_base, portal_cookie, portal_paths[:1])
    finally:
        if loop._thread is not None and loop._thread.is_alive():
            loop.stop()
        for process in servers:
            process.terminate()
        for process in servers:
            process.wait(timeout=30)
    log = (workdir / "gunicorn.log").read_text(errors="replace") if (workdir / "gunicorn.log").exists() else ""
    billing = verify_billing(loop, data.subscription_ids)
    from invoicing.models import Invoice

    result = {
        "seconds": seconds,
        "cores": os.cpu_count(),
        "rows": {
            "customers": data.customers,
            "invoices_before": data.invoices,
            "invoice_lines_before": data.invoice_lines,
            "invoices_after": Invoice.objects.count(),
            "subscriptions": len(data.subscription_ids),
        },
        "server": {
            "workers": workers,
            "threads": threads,
            "portal_workers": portal_workers,
            "log_tracebacks": log.count("Traceback"),
        },
        "billing_nice": billing_nice,
        "surfaces": surfaces,
        "pages_alone_ms": pages,
        "billing": billing,
        "errors": sum(surface["errors"] for surface in surfaces.values()),
        "redirects": sum(surface["redirects"] for surface in surfaces.values()),
    }
    connection.close()
    if not keep:
        drop_database(database)
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def _ms(microseconds: int) -> str:
    return f"{microseconds / 1000:,.0f} ms"


def report(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        f"{result['cores']} cores; {rows['customers']:,} customers, {rows['invoices_before']:,} invoices "
        f"({rows['invoice_lines_before']:,} lines) before, {rows['invoices_after']:,} after; {result['seconds']} s",
        "",
        "| surface | requests | req/s | errors | redirects | p50 | p95 | p99 | max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, surface in result["surfaces"].items():
        lines.append(
            f"| {name} | {surface['requests']:,} | {surface['rps']} | {surface['errors']} | {surface['redirects']} | "
            f"{_ms(surface['p50_us'])} | {_ms(surface['p95_us'])} | {_ms(surface['p99_us'])} | "
            f"{_ms(surface['max_us'])} |"
        )
    lines += ["", "each page alone, before the load (median of 3):"]
    lines += [f"  {milliseconds:>8,.0f} ms  {path}" for path, milliseconds in result["pages_alone_ms"].items()]
    billing = result["billing"]
    lines += [
        "",
        f"billing meanwhile: {billing['runs']} runs ({billing['months']} months) × {billing['subscriptions']} "
        f"subscriptions = {billing['invoices_found']:,} invoices (expected {billing['invoices_expected']:,}); "
        f"exactly once: {billing['exactly_once']}; server tracebacks: {result['server']['log_tracebacks']}",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("LOAD_SECONDS", "60")))
    parser.add_argument("--database", default="billing_load")
    parser.add_argument(
        "--template", default="", help="copy this migrated database instead of migrating an empty one (the tests')"
    )  # fmt: skip
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--invoices", type=int, default=6000)
    parser.add_argument("--subscriptions", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--connections", type=int, default=4, help="wrk connections per surface")
    parser.add_argument(
        "--billing-nice", type=int, default=0,
        help="CPU niceness of the billing loop (10: batch work below the web server, as `nice -n 10 celery worker`)",
    )  # fmt: skip
    parser.add_argument(
        "--portal-workers", type=int, default=0,
        help="serve the portal from its own gunicorn pool of N workers (0: one pool for admin and portal)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the database and the server log")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    options = parser.parse_args()
    result = run_load(
        seconds=options.seconds,
        database=options.database,
        template=options.template,
        customers=options.customers,
        invoices=options.invoices,
        subscriptions=options.subscriptions,
        workers=options.workers,
        threads=options.threads,
        connections=options.connections,
        billing_nice=options.billing_nice,
        portal_workers=options.portal_workers,
        keep=options.keep,
        progress=(lambda message: print(message, file=sys.stderr)) if options.json else print,
    )
    print(json.dumps(result) if options.json else report(result))


if __name__ == "__main__":
    main()
