"""Production profile: ``DJANGO_SETTINGS_MODULE=billing_project.settings_production``.

Everything the base settings read from the environment still applies; this module refuses insecure
defaults and switches on what ``manage.py check --deploy`` asks for.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from billing_project.settings import *  # noqa: F403
from billing_project.settings import env

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY")  # no default: a production process without one must not start
if SECRET_KEY.startswith("insecure-") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured("SECRET_KEY must be a random string of at least 50 characters.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

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
