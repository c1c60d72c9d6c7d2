"""Settings for the test suite: real PostgreSQL (DATABASE_URL or the local server) and Redis."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/billing")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/15")

from billing_project.settings import *  # noqa: F403
from billing_project.settings import env

DATABASES = {"default": env.db("DATABASE_URL")}
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_billing")}
# A commit returns without waiting for its WAL record to reach the disk (about 7 ms a commit on a loaded 2-core
# machine, 0.3-1 ms without): the demo seed, the transactional tests and the worker processes commit thousands
# of times. Visibility, locking and isolation are unchanged; only a crash of the PostgreSQL server itself could
# lose the last commits of a test database (docs/PERFORMANCE.md, "Test suite").
DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c synchronous_commit=off"
CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
CELERY_BROKER_TRANSPORT_OPTIONS = {}
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CELERY_TASK_DEFAULT_QUEUE", "celery")
# Tests that need real workers start them explicitly; everything else runs tasks in-process.
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)
CELERY_TASK_EAGER_PROPAGATES = True

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
BILLING_TIMEZONE = "Europe/Berlin"
# WhiteNoise scans STATIC_ROOT at start-up; tests never collect static files, so give it an empty folder.
STATIC_ROOT = tempfile.mkdtemp(prefix="billing-test-static-")
# The existing admin tests sign in with force_login; the staff two-factor tests turn this on themselves
# (tests/billing_project/test_staff_auth.py).
OTP_REQUIRED = False
# The ledger sync's token key in tests (public: production refuses it, billing_project/deployment.py).
LEDGER_TOKEN_KEY = "dGVzdC1sZWRnZXItdG9rZW4ta2V5LTMyLWJ5dGVzLSE="  # noqa: S105 - public, refused in production
# No VIES from the tests (no internet); tests/customers/test_vat_check.py turns it on against a local fake.
VAT_CHECK_ENABLED = False
VIES_URL = "http://127.0.0.1:9/vies-not-configured-in-tests"
