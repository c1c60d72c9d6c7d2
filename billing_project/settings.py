"""Settings for the billing back-office, read from the environment (django-environ).

Every variable is documented in ``.env.example`` and the README. With nothing set, the project runs in its
embedded demo profile: SQLite under ``var/``, a filesystem Celery broker, e-mails written to ``var/mail/``.
``billing_project.settings_production`` hardens this for deployment; ``settings_test`` points at PostgreSQL.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import environ

from billing_project.deployment import DEMO_SECRET_KEY

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A .env file is a convenience for local runs; real deployments set the environment itself.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
# The demo's key is public: settings_production refuses it (and every other key published with the code).
SECRET_KEY = env.str("SECRET_KEY", default=DEMO_SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

PRODUCT_NAME = env.str("PRODUCT_NAME", default="Cadence Billing")

INSTALLED_APPS = [
    "billing_project.admin_apps.BillingAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_countries",
    "djmoney",
    "django_celery_beat",
    "anymail",
    # The audit trail (docs/decisions/audit.md): triggers installed by migrations record old and new values.
    "pgtrigger",
    "pghistory",
    # Two-factor authentication of staff (billing_project.staff_auth): authenticator apps and recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "rest_framework",
    "drf_spectacular",
    "core",
    "billing_project",
    # The application layers from the bottom up (docs/ARCHITECTURE.md): an app's admin may extend the admins of
    # the apps before it, so this order is also the order in which they are registered.
    "notifications",
    "customers",
    "subscriptions",
    "invoicing",
    "payments",
    "dunning",
    "accounting",
    "reporting",
    "api",
    "webhooks",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "core.middleware.RefuseNulCharacters",
    "core.middleware.ContentSecurityPolicy",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Names the signed-in staff member as the actor of every audited write of a request (core/audit.py).
    "core.audit.AuditActorMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Staff session expiry and the admin's second factor (after the OTP and message middleware it uses).
    "billing_project.staff_auth.StaffSecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# The audit trail (core/audit.py): a snapshot's time is the statement's, not the transaction's start, so the changes
# of one request keep their order across tables.
PGHISTORY_CREATED_AT_FUNCTION = "CLOCK_TIMESTAMP()"

ROOT_URLCONF = "billing_project.urls"
WSGI_APPLICATION = "billing_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "billing_project.context_processors.product",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------------------
# The embedded default is a SQLite file under var/ so that `make demo` needs no server.
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'demo.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web process and the demo worker share the file: WAL lets readers and one writer work together,
    # IMMEDIATE transactions take the write lock up front instead of failing half-way with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
        }
    )
    # The usage events' covering index (INCLUDE) is a PostgreSQL feature; SQLite builds the plain index.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Time, language, money ------------------------------------------------------------------------------
USE_TZ = True
TIME_ZONE = "UTC"
# Billing dates (period starts, due dates, "today" of every job) are dates in this zone.
BILLING_TIMEZONE = env.str("BILLING_TIMEZONE", default="Europe/Berlin")
USE_I18N = True
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("fr", "Français"), ("es", "Español")]
LOCALE_PATHS = [BASE_DIR / "locale"]

# ISO 4217 codes the business bills in. Adding one changes MoneyField choices (a migration), see docs/GOTCHAS.md §3.
CURRENCIES = ("EUR", "USD", "GBP", "CHF", "PLN", "SEK", "JPY", "BHD")
DEFAULT_CURRENCY = env.str("DEFAULT_CURRENCY", default="EUR")
CURRENCY_CHOICES = [(code, code) for code in CURRENCIES]

# The seller printed on every document is data, not configuration: the seller profile (admin › Customers ›
# Seller profile). The customers migration 0005 copied SELLER_* variables of older installations into it.

# --- Static and media -----------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", default=str(VAR_DIR / "static"))
STATICFILES_DIRS = [BASE_DIR / "static"]
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("MEDIA_ROOT", default=str(VAR_DIR / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- E-mail ---------------------------------------------------------------------------------------------
# Demo default: every mail is written as a file under var/mail/ where a person can open it.
# Production: EMAIL_BACKEND=anymail.backends.<provider>.EmailBackend plus ANYMAIL_* settings.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = env.str("EMAIL_FILE_PATH", default=str(VAR_DIR / "mail"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Cadence Billing <billing@example.com>")
SERVER_EMAIL = env.str("SERVER_EMAIL", default=DEFAULT_FROM_EMAIL)
ANYMAIL = env.dict("ANYMAIL", default={})

# --- Celery ---------------------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(VAR_DIR / "broker" / "queue"),
        "data_folder_out": str(VAR_DIR / "broker" / "queue"),
        "processed_folder": str(VAR_DIR / "broker" / "processed"),
        # kombu writes its control exchange (broadcasts) to ./control unless told otherwise
        "control_folder": str(VAR_DIR / "broker" / "control"),
        "store_processed": False,
    }
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = BILLING_TIMEZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# --- Security (hardened further in settings_production) -------------------------------------------------
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# Content-Security-Policy of every response (core.middleware.ContentSecurityPolicy). Scripts only from our origin and
# Stripe.js (card collection with Stripe Elements); no inline script; style attributes allowed (admin, templates).
STRIPE_JS_ORIGINS = ["https://js.stripe.com"]
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' " + " ".join(STRIPE_JS_ORIGINS),
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self' https://api.stripe.com",
        "frame-src 'self' https://js.stripe.com https://hooks.stripe.com",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# wsgi.py, manage.py and the Celery worker and beat refuse this module with DEBUG off (billing_project/deployment.py).
# Only bench/load.py sets this, to measure the development profile without DEBUG; never a deployment.
ALLOW_BASE_SETTINGS_WITHOUT_DEBUG = env.bool("ALLOW_BASE_SETTINGS_WITHOUT_DEBUG", default=False)

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Sign-in and deep-link secrets are URL path segments: Django's request, CSRF and runserver loggers print paths
    # (gunicorn's access log: gunicorn.conf.py).
    "filters": {"link_tokens": {"()": "core.links.RedactLinkTokens"}},
    # The handler has the level too: Django's own loggers (django.*) propagate INFO records to it past the root's.
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "level": LOG_LEVEL}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "django.request": {"filters": ["link_tokens"]},
        # runserver's access log (the request line of every request, a sign-in link's included)
        "django.server": {"filters": ["link_tokens"], "handlers": ["console"], "level": "INFO", "propagate": False},
        "django.security.csrf": {"filters": ["link_tokens"]},
    },
}

# --- Staff accounts (billing_project.staff_auth; docs/SECURITY.md "Staff accounts") ---------------------
# Superusers, Billing admins and Billing clerks must confirm a second factor (authenticator app or a recovery code)
# after their password. On by default; `make demo` and the test settings turn it off.
OTP_REQUIRED = env.bool("OTP_REQUIRED", default=True)
OTP_TOTP_ISSUER = PRODUCT_NAME
# The django-otp device admins (superusers reset a lost device there) never show a device's secret.
OTP_ADMIN_HIDE_SENSITIVE_DATA = True
# Failed admin sign-ins (password or code) allowed per username and per client IP within the window; then every
# attempt is refused with the same message until the window ends. Counted in the cache (CACHE_URL: shared by all
# web processes in production).
ADMIN_LOGIN_RATE_PER_USERNAME = env.int("ADMIN_LOGIN_RATE_PER_USERNAME", default=5)
ADMIN_LOGIN_RATE_PER_IP = env.int("ADMIN_LOGIN_RATE_PER_IP", default=20)
ADMIN_LOGIN_RATE_WINDOW_SECONDS = env.int("ADMIN_LOGIN_RATE_WINDOW_SECONDS", default=900)
# A staff session ends this long after sign-in, or after this long without a request.
ADMIN_SESSION_MAX_AGE_SECONDS = env.int("ADMIN_SESSION_MAX_AGE_SECONDS", default=10 * 3600)
ADMIN_SESSION_IDLE_SECONDS = env.int("ADMIN_SESSION_IDLE_SECONDS", default=3600)

# Billing defaults that later apps read; amounts are Decimal, never float.
DEFAULT_PAYMENT_TERMS_DAYS = env.int("DEFAULT_PAYMENT_TERMS_DAYS", default=14)
# False keeps every invoice the billing run generates as a draft for staff review (per customer: review_invoices).
BILLING_AUTO_FINALIZE = env.bool("BILLING_AUTO_FINALIZE", default=True)
# Subscriptions per billing-run chunk: one transaction and one Celery task each (docs/GOTCHAS.md §11).
BILLING_RUN_CHUNK_SIZE = env.int("BILLING_RUN_CHUNK_SIZE", default=1000)
# A run still "running" with no heartbeat (a chunk started) for this long lost its worker: the stale-work sweeper
# marks it interrupted and starts a run that bills what it left. Keep it above the longest wait of a chunk task in
# the queue (invoicing/stale_runs.py).
BILLING_RUN_STALE_MINUTES = env.int("BILLING_RUN_STALE_MINUTES", default=30)
# After an invoice is issued its "invoice.issued" event is handled: credit and automatic collection (settle), PDF
# and e-mail (deliver). Off only for bulk loads, benchmarks and the demo's history, which must not send anything:
# the events are still written, stored as processed without handlers, and never replayed by the sweep.
BILLING_AFTER_FINALIZE_HOOKS = env.bool("BILLING_AFTER_FINALIZE_HOOKS", default=True)
# Domain events (core/events.py): the sweep resumes events still pending this long after they were written; a
# dispatcher claims an event for DOMAIN_EVENTS_CLAIM_SECONDS; after DOMAIN_EVENTS_MAX_ATTEMPTS failed dispatches
# an event is "failed" and left for staff (admin: Core › Domain events).
DOMAIN_EVENTS_SWEEP_AFTER_MINUTES = env.int("DOMAIN_EVENTS_SWEEP_AFTER_MINUTES", default=5)
DOMAIN_EVENTS_CLAIM_SECONDS = env.int("DOMAIN_EVENTS_CLAIM_SECONDS", default=300)
DOMAIN_EVENTS_MAX_ATTEMPTS = env.int("DOMAIN_EVENTS_MAX_ATTEMPTS", default=10)
# Outgoing webhooks (webhooks/; docs/WEBHOOKS.md). Private, loopback and link-local addresses are refused (SSRF)
# unless WEBHOOKS_ALLOW_PRIVATE_URLS (a receiver on the same network, tests). Failed deliveries are retried with
# exponential backoff (WEBHOOKS_RETRY_BASE_SECONDS doubling, at most WEBHOOKS_RETRY_MAX_SECONDS apart) for
# WEBHOOKS_RETRY_HOURS; an endpoint failing for WEBHOOKS_DISABLE_AFTER_DAYS is disabled and shown on the dashboard.
WEBHOOKS_ALLOW_PRIVATE_URLS = env.bool("WEBHOOKS_ALLOW_PRIVATE_URLS", default=False)
WEBHOOKS_TIMEOUT_SECONDS = env.int("WEBHOOKS_TIMEOUT_SECONDS", default=10)
WEBHOOKS_RETRY_BASE_SECONDS = env.int("WEBHOOKS_RETRY_BASE_SECONDS", default=60)
WEBHOOKS_RETRY_MAX_SECONDS = env.int("WEBHOOKS_RETRY_MAX_SECONDS", default=6 * 3600)
WEBHOOKS_RETRY_HOURS = env.int("WEBHOOKS_RETRY_HOURS", default=72)
WEBHOOKS_DISABLE_AFTER_DAYS = env.int("WEBHOOKS_DISABLE_AFTER_DAYS", default=3)
# After "Rotate secret" the previous secret signs beside the new one for this long.
WEBHOOKS_SECRET_OVERLAP_HOURS = env.int("WEBHOOKS_SECRET_OVERLAP_HOURS", default=24)
# A sender claims a delivery for this long; a dead sender's claim expires and the due job sends it again.
WEBHOOKS_CLAIM_SECONDS = env.int("WEBHOOKS_CLAIM_SECONDS", default=120)
# Account codes of the accounting export (reporting/exports.py; docs/decisions/accounting-export.md), as JSON:
# {"receivables": "1200", "bank": "1000", "revenue": "4000", "tax_payable": "2200", "customer_credit": "2300",
#  "revenue_by_product": {...}, "tax_by_rate": {...}, "xero_tax_types": {...}}; anything left out keeps its default.
ACCOUNTING_ACCOUNTS = env.json("ACCOUNTING_ACCOUNTS", default={})
# The admin dashboard's figures are recomputed at most this often (seconds; 0 = on every page view).
DASHBOARD_CACHE_SECONDS = env.int("DASHBOARD_CACHE_SECONDS", default=60)
# Signed deep links from e-mails into the portal (core/links.py) expire after this many days.
PORTAL_LINK_MAX_AGE_DAYS = env.int("PORTAL_LINK_MAX_AGE_DAYS", default=45)
ZERO = Decimal("0")

# --- Dunning and schedules (invoicing: reminder policies, late fees, setup_schedules) ---------------------
# [dunning settings]
# Invoices read per batch by send_reminders (one query for the invoices, one for their done steps).
DUNNING_BATCH_SIZE = env.int("DUNNING_BATCH_SIZE", default=500)
# Local times (BILLING_TIMEZONE, "HH:MM") at which `setup_schedules` first schedules the daily jobs. Outside
# 02:00–03:59, the hours a daylight-saving change skips or repeats. Staff edit them in the admin afterwards.
SCHEDULE_BILLING_RUN_AT = env.str("SCHEDULE_BILLING_RUN_AT", default="05:00")
SCHEDULE_PAYMENT_RETRIES_AT = env.str("SCHEDULE_PAYMENT_RETRIES_AT", default="07:00")
SCHEDULE_REMINDERS_AT = env.str("SCHEDULE_REMINDERS_AT", default="09:00")
# "Your card expires soon" e-mails (payments/notifications.py), once per card and expiry month.
SCHEDULE_CARD_EXPIRY_NOTICES_AT = env.str("SCHEDULE_CARD_EXPIRY_NOTICES_AT", default="10:00")
# Wallet credits past their expiry day are voided (payments/wallets.py), before the billing run consumes credits.
SCHEDULE_WALLET_EXPIRY_AT = env.str("SCHEDULE_WALLET_EXPIRY_AT", default="00:30")
# The nightly integrity check (reporting/integrity.py); its result shows on the admin dashboard.
SCHEDULE_INTEGRITY_CHECK_AT = env.str("SCHEDULE_INTEGRITY_CHECK_AT", default="04:30")
# Before the billing run: the stored forecast includes the day's own invoices.
SCHEDULE_FORECAST_AT = env.str("SCHEDULE_FORECAST_AT", default="04:45")
# The ECB publishes its reference rates around 16:00 CET on TARGET working days.
SCHEDULE_EXCHANGE_RATES_AT = env.str("SCHEDULE_EXCHANGE_RATES_AT", default="16:30")

# --- VAT numbers: the VIES check (docs/decisions/vat-validation.md) ---
# Queue a VIES check when a customer's EU VAT number changes (off in the demo and the tests: no internet there).
VAT_CHECK_ENABLED = env.bool("VAT_CHECK_ENABLED", default=not DEBUG)
# The EU's VIES REST service; the seller's own VAT number as requester gets a consultation number (empty: the
# seller profile's VAT id).
VIES_URL = env.str("VIES_URL", default="https://ec.europa.eu/taxation_customs/vies/rest-api/check-vat-number")
VIES_REQUESTER_VAT_ID = env.str("VIES_REQUESTER_VAT_ID", default="")
VIES_TIMEOUT_SECONDS = env.int("VIES_TIMEOUT_SECONDS", default=10)
# Attempts of one check while VIES is down (backoff 5 min, 10, 20, …: 8 attempts span about 21 hours); then the
# daily job asks again. A number found valid is asked again after this many days.
VAT_CHECK_MAX_ATTEMPTS = env.int("VAT_CHECK_MAX_ATTEMPTS", default=8)
VAT_RECHECK_DAYS = env.int("VAT_RECHECK_DAYS", default=90)
SCHEDULE_VAT_CHECKS_AT = env.str("SCHEDULE_VAT_CHECKS_AT", default="06:15")

# --- Accounting (docs/decisions/exchange-rates.md) ---
# The currency of the company's books: journals carry each amount in its document currency and in this one.
COMPANY_CURRENCY = env.str("COMPANY_CURRENCY", default="EUR")
# Where the daily job fetches the euro reference rates (the ECB's daily file; the 90-day file for a first load:
# https://www.ecb.europa.eu/stats/eurofxref/eurofxref-hist-90d.xml). Offline: manage.py load_exchange_rates --file.
EXCHANGE_RATES_URL = env.str(
    "EXCHANGE_RATES_URL", default="https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
)
# A conversion takes the latest rate on or before the day, at most this many days old (weekends, holidays).
EXCHANGE_RATE_MAX_AGE_DAYS = env.int("EXCHANGE_RATE_MAX_AGE_DAYS", default=7)

# --- Ledger sync: Xero and QuickBooks Online (accounting/ledger/; docs/decisions/ledger-sync.md) ---
# Fernet key(s) the OAuth tokens are encrypted with at rest, comma-separated (the first encrypts, all decrypt:
# rotation). Generate: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'
LEDGER_TOKEN_KEY = env.str("LEDGER_TOKEN_KEY", default="")
# The beat job "Ledger sync" pushes new documents of every connected ledger only when this is on.
LEDGER_SYNC_ENABLED = env.bool("LEDGER_SYNC_ENABLED", default=False)
SCHEDULE_LEDGER_SYNC_EVERY_MINUTES = env.int("SCHEDULE_LEDGER_SYNC_EVERY_MINUTES", default=60)
# The OAuth apps registered at the providers, and their endpoints (tests point these at local fakes). The account
# codes, tax types / tax codes and the QuickBooks item are the ledger's own: set them to the organisation's chart.
LEDGER_PROVIDERS = {
    "xero": {
        "client_id": env.str("LEDGER_XERO_CLIENT_ID", default=""),
        "client_secret": env.str("LEDGER_XERO_CLIENT_SECRET", default=""),
        "redirect_uri": env.str("LEDGER_XERO_REDIRECT_URI", default=""),
        "authorize_url": env.str(
            "LEDGER_XERO_AUTHORIZE_URL", default="https://login.xero.com/identity/connect/authorize"
        ),
        "token_url": env.str("LEDGER_XERO_TOKEN_URL", default="https://identity.xero.com/connect/token"),
        "api_url": env.str("LEDGER_XERO_API_URL", default="https://api.xero.com"),
        "scope": "offline_access accounting.transactions accounting.contacts",
        "sales_account": env.str("LEDGER_XERO_SALES_ACCOUNT", default="200"),
        "bank_account": env.str("LEDGER_XERO_BANK_ACCOUNT", default="090"),
        # EN 16931 tax category → Xero TaxType (region-specific in Xero: these are the global defaults)
        "tax_types": env.json(
            "LEDGER_XERO_TAX_TYPES",
            default={
                "S": "OUTPUT",
                "AA": "OUTPUT",
                "Z": "ZERORATEDOUTPUT",
                "E": "EXEMPTOUTPUT",
                "AE": "ECZROUTPUTSERVICES",
                "K": "ECZROUTPUTSERVICES",
                "G": "EXEMPTEXPORT",
                "O": "NONE",
            },
        ),
    },
    "quickbooks": {
        "client_id": env.str("LEDGER_QUICKBOOKS_CLIENT_ID", default=""),
        "client_secret": env.str("LEDGER_QUICKBOOKS_CLIENT_SECRET", default=""),
        "redirect_uri": env.str("LEDGER_QUICKBOOKS_REDIRECT_URI", default=""),
        "authorize_url": env.str(
            "LEDGER_QUICKBOOKS_AUTHORIZE_URL", default="https://appcenter.intuit.com/connect/oauth2"
        ),
        "token_url": env.str(
            "LEDGER_QUICKBOOKS_TOKEN_URL", default="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
        ),
        # the sandbox companies: https://sandbox-quickbooks.api.intuit.com
        "api_url": env.str("LEDGER_QUICKBOOKS_API_URL", default="https://quickbooks.api.intuit.com"),
        "scope": "com.intuit.quickbooks.accounting",
        "minor_version": env.str("LEDGER_QUICKBOOKS_MINOR_VERSION", default="75"),
        "item_id": env.str("LEDGER_QUICKBOOKS_ITEM_ID", default="1"),
        # EN 16931 tax category → QuickBooks TaxCode id ("TAX"/"NON" in US companies; ids elsewhere)
        "tax_codes": env.json("LEDGER_QUICKBOOKS_TAX_CODES", default={"S": "TAX", "AA": "TAX"}),
        "default_tax_code": env.str("LEDGER_QUICKBOOKS_DEFAULT_TAX_CODE", default="NON"),
    },
}
# The DATEV export (reporting/datev.py; docs/decisions/datev.md), as JSON: {"consultant_number": 29098,
#  "client_number": 55003, "chart": "SKR03"|"SKR04", "account_length": 4, "fiscal_year_start_month": 1,
#  "revenue_accounts": {"S19": "8400", "AA7": "8300", "AE": "8336", ...}, "bu_keys": {"S19": "3"}, "bank": "1200",
#  "fx_gain": "2660", "fx_loss": "2150", "lock": false}; anything left out keeps the chart's default.
DATEV = env.json("DATEV", default={})
# Every this many minutes: render PDFs that are missing (a failed render); archived PDFs are never rendered again.
SCHEDULE_RENDER_PDFS_EVERY_MINUTES = env.int("SCHEDULE_RENDER_PDFS_EVERY_MINUTES", default=30)
# Every this many minutes: rebuild the metrics snapshot the dashboard and the reports read (reporting/metrics.py;
# about 30 s of one core at a million invoices, docs/PERFORMANCE.md). Pages show its as-of time.
SCHEDULE_METRICS_REFRESH_EVERY_MINUTES = env.int("SCHEDULE_METRICS_REFRESH_EVERY_MINUTES", default=15)

# --- Customer portal (customers: login tokens; invoicing/payments: portal pages) --------------------------
# [portal settings]
# Sign-in links: single use, valid this many minutes (staff invitations: hours).
PORTAL_LOGIN_TOKEN_MAX_AGE_MINUTES = env.int("PORTAL_LOGIN_TOKEN_MAX_AGE_MINUTES", default=15)
PORTAL_INVITE_MAX_AGE_HOURS = env.int("PORTAL_INVITE_MAX_AGE_HOURS", default=72)
# Sign-in link requests allowed per e-mail address and per client IP within the window (Django's cache counts them:
# with several web processes CACHE_URL must name a shared cache, e.g. redis://127.0.0.1:6379/2).
PORTAL_LOGIN_RATE_PER_EMAIL = env.int("PORTAL_LOGIN_RATE_PER_EMAIL", default=5)
PORTAL_LOGIN_RATE_PER_IP = env.int("PORTAL_LOGIN_RATE_PER_IP", default=20)
PORTAL_LOGIN_RATE_WINDOW_SECONDS = env.int("PORTAL_LOGIN_RATE_WINDOW_SECONDS", default=900)
# Production refuses a cache local to each process (locmem, dummy): the limits would count per process.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
# A portal session ends this long after sign-in (the browser's cookie too).
PORTAL_SESSION_MAX_AGE_SECONDS = env.int("PORTAL_SESSION_MAX_AGE_SECONDS", default=12 * 3600)
# Customers may cancel their subscriptions (at the end of the current period) in the portal.
PORTAL_ALLOW_CANCEL = env.bool("PORTAL_ALLOW_CANCEL", default=True)
PORTAL_INVOICES_PER_PAGE = env.int("PORTAL_INVOICES_PER_PAGE", default=25)

# --- Documents and e-mail delivery (invoicing: PDFs, invoice e-mails, tracking webhooks) -----------------
# [delivery settings]
# The customer portal's public base URL: invoices link to {PORTAL_BASE_URL}/portal/invoices/<number>/.
PORTAL_BASE_URL = env.str("PORTAL_BASE_URL", default="http://127.0.0.1:8000")
# The TrueType fonts embedded in every PDF (shipped in the repo: DejaVu covers €, ł, ő, Greek, Cyrillic).
INVOICE_PDF_FONT_DIR = env.path("INVOICE_PDF_FONT_DIR", default=str(BASE_DIR / "static" / "fonts"))
# Send the invoice e-mail when an invoice is finalized (manual / one-off / "send invoice" subscriptions).
INVOICE_EMAIL_ON_FINALIZE = env.bool("INVOICE_EMAIL_ON_FINALIZE", default=True)
# Sender of customer e-mails (defaults to DEFAULT_FROM_EMAIL) and an optional Reply-To.
BILLING_FROM_EMAIL = env.str("BILLING_FROM_EMAIL", default=DEFAULT_FROM_EMAIL)
BILLING_REPLY_TO = env.list("BILLING_REPLY_TO", default=[])
# Attempts per e-mail before it is marked failed (5xx / timeouts are retried; 4xx fail at once), and the base of
# the exponential back-off in seconds (60 → 1, 2, 4, 8 min …, capped at one hour).
EMAIL_MAX_ATTEMPTS = env.int("EMAIL_MAX_ATTEMPTS", default=6)
EMAIL_RETRY_BACKOFF_SECONDS = env.int("EMAIL_RETRY_BACKOFF_SECONDS", default=60)
# PDF rendering retries (a failed render is retried by its task, then shows as "missing" in the admin).
PDF_RENDER_MAX_RETRIES = env.int("PDF_RENDER_MAX_RETRIES", default=5)
# E-mails still queued this many minutes after their last try (the broker was unreachable when they were
# handed to the workers, or a worker died holding the task) are sent by the periodic e-mail sweep, which also
# queues the invoice e-mail of an invoice whose after-finalize hook never ran.
EMAIL_SWEEP_AFTER_MINUTES = env.int("EMAIL_SWEEP_AFTER_MINUTES", default=15)
# An e-mail claimed for sending this many minutes ago and still "sending" lost its worker mid-send: the sweep
# marks it failed ("interrupted while sending") for staff to check and resend — never re-sent on a guess. Keep it
# well above the provider's timeout.
EMAIL_SENDING_STALE_MINUTES = env.int("EMAIL_SENDING_STALE_MINUTES", default=60)
# Redis broker: a task a worker took but never acknowledged (the worker was killed) is handed to another worker
# after this many seconds. Keep it above the longest task and the longest retry countdown (e-mail back-off ≤ 1 h),
# or a task that is merely waiting is delivered a second time (harmless — every task is idempotent — but early).
BROKER_VISIBILITY_TIMEOUT_SECONDS = env.int("BROKER_VISIBILITY_TIMEOUT_SECONDS", default=3600)
# Basic-auth credentials "user:password" the provider must send to /anymail/<provider>/tracking/.
if env.str("ANYMAIL_WEBHOOK_SECRET", default=""):
    ANYMAIL = {**ANYMAIL, "WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET")}

# --- Payments (gateways, automatic collection, bank import) --------------------------------------------
# [payments settings]
# Gateway charged for saved payment methods that name none: "sandbox" (test cards, no network) or "stripe".
PAYMENTS_DEFAULT_GATEWAY = env.str("PAYMENTS_DEFAULT_GATEWAY", default="sandbox")
# Customer credit is applied to each invoice when it is finalized.
PAYMENTS_APPLY_CREDIT_ON_FINALIZE = env.bool("PAYMENTS_APPLY_CREDIT_ON_FINALIZE", default=True)
# Soft-declined automatic charges are retried this many days after the first try (hard declines never).
PAYMENTS_RETRY_SCHEDULE_DAYS = [int(days) for days in env.list("PAYMENTS_RETRY_SCHEDULE_DAYS", default=["3", "5", "7"])]
# After the last failed try: "past_due" moves the subscription to past due, "none" leaves it as it is.
PAYMENTS_FAILED_SUBSCRIPTION_POLICY = env.str("PAYMENTS_FAILED_SUBSCRIPTION_POLICY", default="past_due")
# A try still "processing" after this many minutes (a crashed worker) is re-sent with the same idempotency key.
PAYMENTS_PROCESSING_TIMEOUT_MINUTES = env.int("PAYMENTS_PROCESSING_TIMEOUT_MINUTES", default=15)
# Webhooks signed longer ago than this are refused (replay protection).
PAYMENTS_WEBHOOK_TOLERANCE_SECONDS = env.int("PAYMENTS_WEBHOOK_TOLERANCE_SECONDS", default=300)
# Production settings refuse the sandbox gateway unless a staging deployment says so (check --deploy: billing.E004).
PAYMENTS_ALLOW_SANDBOX = env.bool("PAYMENTS_ALLOW_SANDBOX", default=False)
PAYMENTS_SANDBOX_WEBHOOK_SECRET = env.str("PAYMENTS_SANDBOX_WEBHOOK_SECRET", default="whsec_sandbox_demo")
# Bank CSV columns: our field = the column header in the bank's file (override per import with --mapping).
PAYMENTS_BANK_CSV_MAPPING = env.dict(
    "PAYMENTS_BANK_CSV_MAPPING",
    default={
        "transaction_id": "Transaction ID",
        "booking_date": "Booking date",
        "amount": "Amount",
        "currency": "Currency",
        "counterparty_name": "Counterparty",
        "counterparty_iban": "IBAN",
        "remittance": "Remittance information",
    },
)
# "Your payment failed — update your card" e-mails link to {PORTAL_BASE_URL}/portal/ (set in the delivery block).
STRIPE_API_KEY = env.str("STRIPE_API_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=2)
# Stripe.js for the portal's card page (Payment Element); tests serve a local stand-in from our origin instead.
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_JS_URL = env.str("STRIPE_JS_URL", default="https://js.stripe.com/v3/")
# An off-session charge that needs 3-D Secure: no dunning step for the invoice until this many days after the
# customer was e-mailed the authentication link (docs/decisions/payments.md).
# Staff's "send add-card link" e-mails a signed link to the portal's add-a-method page, valid this long.
PAYMENTS_METHOD_LINK_MAX_AGE_DAYS = env.int("PAYMENTS_METHOD_LINK_MAX_AGE_DAYS", default=7)
PAYMENT_ACTION_GRACE_DAYS = env.int("PAYMENT_ACTION_GRACE_DAYS", default=7)
# SEPA Direct Debit: the invoice says "will be debited on or after" the charge day plus this many days.
PAYMENTS_SEPA_DEBIT_DAYS = env.int("PAYMENTS_SEPA_DEBIT_DAYS", default=3)
# Fees the gateway charges the business, when its event does not state one ("" = none recorded).
PAYMENTS_SEPA_FAILURE_FEE = env.str("PAYMENTS_SEPA_FAILURE_FEE", default="")
PAYMENTS_DISPUTE_FEE = env.str("PAYMENTS_DISPUTE_FEE", default="")

# --- Imports (customer CSV, bank statements): limits checked before any row is validated ----------------
# [import settings]
# The largest file an import accepts (admin upload or command), in bytes; reading stops there.
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=20 * 1024 * 1024)
# The most data rows (CSV records or CAMT.053 entries) one import accepts; a bigger file is refused up front.
# Imports validate about 200 rows a second, so 10,000 rows take under a minute.
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=10_000)

# --- Public REST API (api app, docs/API.md) -------------------------------------------------------------
# Requests each API key may make per minute (a fixed window counted in the cache: CACHE_URL must be a shared cache,
# Redis, when there are several web processes); over it the API answers 429 with Retry-After. 0 = no limit.
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=600)
# Objects per page of a list (cursor pagination; ?limit= up to API_PAGE_SIZE_MAX).
API_PAGE_SIZE = env.int("API_PAGE_SIZE", default=50)
API_PAGE_SIZE_MAX = env.int("API_PAGE_SIZE_MAX", default=200)
# Idempotency-Key records are kept this long (hours); purge_idempotency_keys deletes older ones.
API_IDEMPOTENCY_HOURS = env.int("API_IDEMPOTENCY_HOURS", default=24)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["api.auth.HasApiScope"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.DecimalJSONParser"],
    "EXCEPTION_HANDLER": "api.problems.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "COERCE_DECIMAL_TO_STRING": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Cadence Billing API",
    "DESCRIPTION": "Customers, catalogue, subscriptions, invoices, credit notes, payments and events. See docs/API.md.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.schema.add_problem_responses",
    ],
}
