# The two commands of the README: `make demo` and `make test`. Everything a fresh machine needs is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
APPS := core notifications customers subscriptions invoicing payments dunning accounting reporting api webhooks billing_project
DEMO_PORT ?= 8000
# The demo's commands log warnings only (the worker logs INFO to var/worker.log); e-mail links use the port; the
# demo logins (admin/admin, …) sign in without a second factor (OTP_REQUIRED=false, docs/SECURITY.md).
DEMO_ENV := DEBUG=1 DATABASE_URL=sqlite:///$(CURDIR)/var/demo.sqlite3 CELERY_BROKER_URL=filesystem://localhost/ \
	PORTAL_BASE_URL=http://127.0.0.1:$(DEMO_PORT) LOG_LEVEL=WARNING OTP_REQUIRED=false
TODAY := $(shell date +%F)

.PHONY: install system-packages demo test lint check migrations-check messages pytest worker beat bench clean api-schema

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

# Quiet on purpose: a line per seed step, then the banner once the server answers (demo_banner --wait).
demo: install
	@mkdir -p var/mail var/media var/broker/queue var/broker/processed var/broker/control
	@$(PY) -c 'import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); \
		s.bind(("127.0.0.1", $(DEMO_PORT)))' 2>/dev/null \
		|| { echo "Port $(DEMO_PORT) is in use. Stop what uses it, or run: make demo DEMO_PORT=8001"; exit 1; }
	@echo "Preparing the demo database (var/demo.sqlite3)…"
	@$(DEMO_ENV) $(PY) manage.py migrate --noinput --verbosity 0
	@$(DEMO_ENV) $(PY) manage.py seed_demo
	@$(DEMO_ENV) $(PY) manage.py setup_schedules --verbosity 0
	@$(DEMO_ENV) $(PY) manage.py demo_camt053 --output var/camt053-demo.xml --verbosity 0
	@echo "Starting the worker (log: var/worker.log) and the server…"
	@set -e; \
	$(DEMO_ENV) LOG_LEVEL=INFO $(BIN)/celery -A billing_project worker --beat --pool=solo --loglevel=INFO \
		>var/worker.log 2>&1 & worker=$$!; \
	$(DEMO_ENV) $(PY) manage.py demo_banner --wait 120 & banner=$$!; \
	trap 'kill $$worker $$banner 2>/dev/null || true' EXIT INT TERM; \
	$(DEMO_ENV) $(PY) manage.py runserver 127.0.0.1:$(DEMO_PORT)

# Debian packages the tests need (chromium, poppler-utils, fonts, wrk): one list, scripts/system-packages.sh.
system-packages:
	@bash scripts/system-packages.sh

# mypy's cache lives outside the checkout (MYPY_CACHE_DIR), so a fresh clone starts warm (~4 s instead of ~45 s on
# 2 cores): mypy checks each cached module against the source's hash when the file's mtime differs, so a cache
# written by another checkout is only reused for files whose contents are the same.
MYPY_CACHE_DIR ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/cadence-billing/mypy

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --cache-dir "$(MYPY_CACHE_DIR)" $(APPS)
	$(BIN)/lint-imports --no-cache

# The gettext catalogues (locale/<lang>/LC_MESSAGES/django.po, docs/i18n.md) compiled to the .mo files Django
# reads; the .mo files are committed, and tests/core/test_translations.py fails when one is older than its .po.
messages: install
	DEBUG=1 DATABASE_URL=sqlite:///:memory: $(PY) manage.py compilemessages --ignore=.venv --verbosity 0

migrations-check: install
	DEBUG=1 DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run

# The suite in two parts: everything but the long end-to-end tests on TEST_WORKERS processes (pytest-xdist, one
# PostgreSQL test database each), then the e2e tests (load test under wrk, browser) in one process, so they
# neither compete with the rest for the CPU nor share a process with it. Then the 15 slowest tests and the time.
# --dist loadgroup: the tests of one xdist_group (those sharing the seeded demo, the migrated SQLite) go to one
# worker, the biggest group first; the rest one by one, the slow ones first (tests/conftest.py), so that both
# workers finish together. Every test database is a copy of one migrated template (tests/databases.py).
TEST_WORKERS ?= 2
pytest: install system-packages
	@mkdir -p var/test-results && rm -f var/test-results/*.xml
	@started=$$(date +%s); status=0; \
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup -m "not e2e" --junitxml=var/test-results/parallel.xml $(PYTEST_ARGS) \
		|| status=$$?; \
	$(BIN)/pytest -m e2e --junitxml=var/test-results/e2e.xml $(PYTEST_ARGS) || { rc=$$?; [ $$rc = 5 ] || status=$$rc; }; \
	$(PY) scripts/test_report.py --slowest 15 --started $$started var/test-results/*.xml; \
	exit $$status

check test: system-packages lint migrations-check pytest

# The committed OpenAPI schema of /api/v1/ (tests/api/test_schema.py fails until it is regenerated after a change).
api-schema: install
	DEBUG=1 DATABASE_URL=sqlite:///:memory: $(PY) manage.py spectacular --validate --fail-on-warn --file docs/api/openapi.yaml

worker: install
	DEBUG=$${DEBUG:-1} $(BIN)/celery -A billing_project worker --loglevel=INFO

beat: install
	DEBUG=$${DEBUG:-1} $(BIN)/celery -A billing_project beat --loglevel=INFO

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf var/demo.sqlite3* var/broker var/mail var/media var/worker.log var/celerybeat-schedule* var/camt053-demo.xml
