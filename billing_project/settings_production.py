"""Production profile: ``DJANGO_SETTINGS_MODULE=billing_project.settings_production``.

Everything the base settings read from the environment still applies; this module refuses insecure
defaults and switches on what ``manage.py check --deploy`` asks for.
"""

from __future__ import annotations

import secrets

from django.core.exceptions import ImproperlyConfigured

from billing_project import deployment
from billing_project.settings import *  # noqa: F403
from billing_project.settings import (
    ANYMAIL,
    CACHES,
    LEDGER_PROVIDERS,
    LEDGER_TOKEN_KEY,
    PAYMENTS_ALLOW_SANDBOX,
    PAYMENTS_DEFAULT_GATEWAY,
    PAYMENTS_SANDBOX_WEBHOOK_SECRET,
    env,
)

DEBUG = False
ALLOW_BASE_SETTINGS_WITHOUT_DEBUG = False
SECRET_KEY = env.str("SECRET_KEY", default="")  # no default: a production process without one must not start
# Short, placeholder and published keys (the demo default, .env.example, README and docs snippets) are refused:
# whoever read the repository could sign sessions and portal deep links.
_secret_key_problem = deployment.secret_key_problem(SECRET_KEY)
if _secret_key_problem:
    raise ImproperlyConfigured(
        f"{_secret_key_problem}. Generate one: python -c 'import secrets; print(secrets.token_urlsafe(64))'"
    )
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")
# The portal's sign-in rate limits count in the cache: a per-process cache multiplies them by the process count.
_cache_problem = deployment.cache_problem(CACHES)
if _cache_problem:
    raise ImproperlyConfigured(_cache_problem)
# The Xero / QuickBooks OAuth tokens are encrypted with this key (accounting/ledger/crypto.py).
_ledger_key_problem = deployment.ledger_token_key_problem(LEDGER_TOKEN_KEY, LEDGER_PROVIDERS)
if _ledger_key_problem:
    raise ImproperlyConfigured(
        f"{_ledger_key_problem}. Generate one: "
        "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
    )

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Webhooks fail closed. Without ANYMAIL_WEBHOOK_SECRET anymail accepts tracking events from anyone (it only warns),
# so anyone could mark invoice e-mails bounced or flag customer addresses: an unguessable secret nobody knows makes
# every unauthenticated call a 400 until the provider's credentials are configured.
if not ANYMAIL.get("WEBHOOK_SECRET"):
    ANYMAIL = {**ANYMAIL, "WEBHOOK_SECRET": f"unset:{secrets.token_urlsafe(32)}"}
# The sandbox's demo secret is public (settings.py, .env.example): sandbox webhooks signed with it are refused
# here (an empty secret refuses all of them) unless a deployment sets its own.
PUBLIC_DEMO_VALUES = frozenset({"whsec_sandbox_demo"})
if PAYMENTS_SANDBOX_WEBHOOK_SECRET in PUBLIC_DEMO_VALUES:
    PAYMENTS_SANDBOX_WEBHOOK_SECRET = ""
# The sandbox gateway "charges" test cards without moving money: in production a customer could pay an invoice
# with 4242… Refuse to start with it, unless a staging deployment says so explicitly.
if PAYMENTS_DEFAULT_GATEWAY == "sandbox" and not PAYMENTS_ALLOW_SANDBOX:
    raise ImproperlyConfigured(
        "PAYMENTS_DEFAULT_GATEWAY is 'sandbox' (test cards, no money moves): set it to 'stripe' with STRIPE_API_KEY "
        "and STRIPE_WEBHOOK_SECRET, or PAYMENTS_ALLOW_SANDBOX=true on a staging deployment"
    )
