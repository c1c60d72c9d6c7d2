"""One way to import a file: parse → validate every row → report each problem by row and column → write all
of it, or nothing.

The importers, and what importing the same file twice does:

==================  =================================================  ==========================================
importer            service · command · admin screen                   on a bad row · on a second import
==================  =================================================  ==========================================
customers (CSV)     ``customers.services.customers_import_csv`` ·      all or nothing · rows match existing
                    ``import_customers`` · Customers → Import CSV      customers (external id, else e-mail) and
                                                                       update them
usage (CSV)         ``subscriptions.services.usage_import_csv`` ·      all or nothing · a re-sent record (same
                    ``import_usage`` · Usage records → Import CSV      idempotency key and values) is counted as
                                                                       a duplicate and ignored
usage events        ``subscriptions.services.usage_events_import`` ·   all or nothing · transaction ids already
(NDJSON, CSV)       ``import_usage_events`` (COPY)                     stored are counted as duplicates, ignored
bank statements     ``payments.bank_import.bank_statement_import`` ·   all or nothing for a bad file ·
(CSV, CAMT.053)     ``import_bank_statement`` · Bank statements →      idempotent per file: each bank transaction
                    Import                                             id is imported once, so importing the same
                                                                       statement twice creates nothing
==================  =================================================  ==========================================

The pieces every importer shares:

- ``RowError(row, column, message)`` (``core.csvfile``): ``row`` counts records as a spreadsheet
  shows them (the header is row 1; a bank statement's problems with the whole file are row 0, its CAMT.053
  entries are numbered from 1).
- ``ImportReport``: rows read, the importer's counters (created, updated, …), the errors, ``ok``,
  ``summary()`` and ``as_json()`` — the same keys for every importer.
- ``DataImportError``: what a service raises when it rejects the file, carrying the report; nothing was written.
- ``ImportCommand``: ``manage.py <import> FILE [--dry-run] [--json]``: the same options, output and exit status
  for every importer (the report's problems on stderr, ``CommandError`` with the summary, exit status 1).
- ``ImportAdminMixin``: the admin upload screen (a file, a dry-run box, the report with its row numbers).

Limits (size, rows) and the reading of the file (encoding, delimiter) are ``core.csvfile``'s.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError, CommandParser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.admin_errors import form_application_error
from core.commands import BaseCommand
from core.csvfile import RowError, upload_size_problem
from core.errors import ApplicationError, InvalidInput

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

    _ModelAdmin = ModelAdmin[Any]
else:
    _ModelAdmin = object

__all__ = (
    "DataImportError",
    "ImportAdminMixin",
    "ImportCommand",
    "ImportReport",
    "ImportUploadForm",
    "RowError",
)

# How many problems the exception's message lists (the report holds all of them).
PROBLEMS_IN_MESSAGE = 50


@dataclass(kw_only=True)
class ImportReport:
    """What an import did, or would do (``dry_run``), or why it wrote nothing (``errors``).

    A subclass names its counters (``counters = ("created", "updated")``, each an ``int`` field) and says what
    happened in ``outcome()``; the rest is shared."""

    counters: ClassVar[tuple[str, ...]] = ()

    dry_run: bool = False
    rows: int = 0  # data rows (records, statement entries) read from the file
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.counters}

    def summary(self) -> str:
        if self.errors:
            return f"{len(self.errors)} error(s); nothing was written."
        return self.outcome()

    def outcome(self) -> str:
        """One sentence: what was (or, in a dry run, would be) written."""
        raise NotImplementedError

    def details(self) -> dict[str, Any]:
        """What else the importer reports (JSON-serialisable), under ``details`` in ``as_json()``."""
        return {}

    def as_json(self) -> dict[str, Any]:
        """The report as the commands print it with ``--json``: the same keys for every importer."""
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "summary": self.summary(),
            "rows": self.rows,
            "counts": self.counts(),
            "errors": [{"row": e.row, "column": e.column, "message": e.message} for e in self.errors],
            "details": self.details(),
        }


class DataImportError(InvalidInput):
    """The file was rejected and nothing was written; ``report`` names every problem by row and column.

    (Not called ``ImportError``: that name is Python's, and ``except ImportError`` must keep meaning it.)"""

    def __init__(self, report: ImportReport) -> None:
        self.report = report
        problems = "\n".join(str(error) for error in report.errors[:PROBLEMS_IN_MESSAGE])
        super().__init__(report.summary() + (f"\n{problems}" if problems else ""))


# --- the command ----------------------------------------------------------------------------------------


class ImportCommand(BaseCommand):
    """``manage.py <import> FILE [--dry-run] [--json]`` plus the importer's own options.

    Output: the summary on stdout; with ``--json`` the report as one JSON object (``ImportReport.as_json``)
    instead. A rejected file: its problems on stderr (``FILE: row 3, …``; with ``--json`` in the JSON on
    stdout), then ``CommandError`` with the summary — exit status 1. A subclass implements ``run_import``."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The file to import.")
        self.add_import_arguments(parser)
        parser.add_argument("--dry-run", action="store_true", help="Check and report; write nothing.")
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def add_import_arguments(self, parser: CommandParser) -> None:
        """The importer's own options, if any."""

    def run_import(self, *, stream: IO[bytes], path: Path, dry_run: bool, options: dict[str, Any]) -> ImportReport:
        """Import the open file; raise ``DataImportError`` (with the report) to reject it."""
        raise NotImplementedError

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        try:
            stream = path.open("rb")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc
        try:
            with stream:
                report = self.run_import(stream=stream, path=path, dry_run=options["dry_run"], options=options)
        except DataImportError as exc:
            self.write_report(exc.report, path=path, as_json=options["json"])
            raise CommandError(exc.report.summary()) from exc
        self.write_report(report, path=path, as_json=options["json"])

    def write_report(self, report: ImportReport, *, path: Path, as_json: bool) -> None:
        if as_json:
            self.stdout.write(json.dumps(report.as_json()))
        elif report.errors:
            for error in report.errors:
                self.stderr.write(f"{path}: {error}")
        else:
            self.stdout.write(self.style.SUCCESS(report.summary()))


# --- the admin upload screen ----------------------------------------------------------------------------


class ImportUploadForm(forms.Form):
    """The upload screen's form; an importer's own form adds its options (and may relabel ``file``)."""

    file = forms.FileField(label="File", help_text="UTF-8, with a header row.")
    dry_run = forms.BooleanField(label="Dry run (check only, write nothing)", required=False, initial=True)

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if problem := upload_size_problem(upload.size):
            raise forms.ValidationError(problem)
        return upload


class ImportAdminMixin(_ModelAdmin):
    """A ModelAdmin's upload screen at ``<changelist>/import/`` (URL name ``<app>_<model>_import``): the form,
    the import in dry run or for real, and the report — its summary as a message, every problem in a table by
    row and column. A real import that succeeds goes on to ``import_done_url``.

    A subclass sets ``import_title`` and ``import_template`` (extending ``admin/billing/import_page.html``) and
    implements ``run_import``; ``import_form_class``, ``has_import_permission`` and ``import_context`` are
    there to be overridden."""

    import_title = "Import"
    import_template = "admin/billing/import_page.html"
    import_form_class: type[ImportUploadForm] = ImportUploadForm

    def get_urls(self) -> list[Any]:
        name = f"{self.model._meta.app_label}_{self.model._meta.model_name}_import"
        return [path("import/", self.admin_site.admin_view(self.import_view), name=name), *super().get_urls()]

    def has_import_permission(self, request: HttpRequest) -> bool:
        return self.has_add_permission(request)

    def run_import(self, request: HttpRequest, form: ImportUploadForm) -> ImportReport:
        """Import ``form.cleaned_data["file"]``; raise ``DataImportError`` (with the report) to reject it."""
        raise NotImplementedError

    def import_done_url(self, report: ImportReport) -> str:
        opts = self.model._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    def import_context(self, request: HttpRequest) -> dict[str, Any]:
        """More for the template (a list of columns, …)."""
        return {}

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_import_permission(request):
            raise PermissionDenied
        report: ImportReport | None = None
        form = self.import_form_class(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                report = self.run_import(request, form)
            except DataImportError as exc:
                report = exc.report
                self.message_user(request, report.summary(), messages.ERROR)
            except ApplicationError as exc:  # an option the service refused (a bad column mapping)
                form_application_error(form, exc)
            else:
                self.message_user(request, report.summary(), messages.SUCCESS)
                if not report.dry_run:
                    return HttpResponseRedirect(self.import_done_url(report))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": self.import_title,
            "submit_label": "Import",
            "form": form,
            "report": report,
            **self.import_context(request),
        }
        return TemplateResponse(request, self.import_template, context)
