# The two commands of the README: `make demo` and `make test`. Everything a fresh machine needs is installed here.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
APPS := core billing_project customers subscriptions invoicing payments
DEMO_ENV := DEBUG=1 DATABASE_URL=sqlite:///$(CURDIR)/var/demo.sqlite3 CELERY_BROKER_URL=filesystem://
TODAY := $(shell date +%F)

.PHONY: install system-packages demo test lint check migrations-check pytest worker beat bench clean

install: $(INSTALLED)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $@

demo: install
	mkdir -p var/mail var/media var/broker/queue var/broker/processed var/broker/control
	$(DEMO_ENV) $(PY) manage.py migrate --noinput
	$(DEMO_ENV) $(PY) manage.py seed_demo
	$(DEMO_ENV) $(PY) manage.py setup_schedules
	@$(DEMO_ENV) $(PY) manage.py demo_banner
	@set -e; \
	$(DEMO_ENV) $(BIN)/celery -A billing_project worker --beat --pool=solo --loglevel=INFO \
		>var/worker.log 2>&1 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null || true' EXIT INT TERM; \
	echo "Worker + beat running (log: var/worker.log). Serving on http://127.0.0.1:8000 — Ctrl-C stops both."; \
	$(DEMO_ENV) $(PY) manage.py runserver 127.0.0.1:8000

# Debian packages the tests need (chromium, poppler-utils, fonts, wrk): one list, scripts/system-packages.sh.
system-packages:
	@bash scripts/system-packages.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(APPS)

migrations-check: install
	DATABASE_URL=sqlite:///:memory: $(PY) manage.py makemigrations --check --dry-run

# The suite in two parts: everything but the long end-to-end tests on TEST_WORKERS processes (pytest-xdist, one
# PostgreSQL test database each), then the e2e tests (load test under wrk, browser) in one process, so they
# neither compete with the rest for the CPU nor share a process with it. Then the 15 slowest tests and the time.
TEST_WORKERS ?= 2
pytest: install system-packages
	@mkdir -p var/test-results && rm -f var/test-results/*.xml
	@started=$$(date +%s); status=0; \
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not e2e" --junitxml=var/test-results/parallel.xml $(PYTEST_ARGS) \
		|| status=$$?; \
	$(BIN)/pytest -m e2e --junitxml=var/test-results/e2e.xml $(PYTEST_ARGS) || { rc=$$?; [ $$rc = 5 ] || status=$$rc; }; \
	$(PY) scripts/test_report.py --slowest 15 --started $$started var/test-results/*.xml; \
	exit $$status

check test: system-packages lint migrations-check pytest

worker: install
	$(BIN)/celery -A billing_project worker --loglevel=INFO

beat: install
	$(BIN)/celery -A billing_project beat --loglevel=INFO

bench: install
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf var/demo.sqlite3* var/broker var/mail var/media var/worker.log var/celerybeat-schedule*
