"""Writes on customers. Plain functions, keyword-only and typed (docs/STYLE.md)."""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from django import forms
from django.conf import settings
from django.db import models, transaction
from django.db.models.functions import Lower

from core import imports
from core.csvfile import CsvFileError, RowError, read_csv
from core.errors import NotAllowed
from customers.models import Customer
from customers.selectors import customer_has_billing_history


class CustomerHasBillingHistory(NotAllowed):
    pass


def customer_archive(*, customer: Customer) -> Customer:
    if not customer.is_archived:
        customer.is_archived = True
        customer.save(update_fields=["is_archived", "updated_at"])
    return customer


def customer_unarchive(*, customer: Customer) -> Customer:
    if customer.is_archived:
        customer.is_archived = False
        customer.save(update_fields=["is_archived", "updated_at"])
    return customer


def customer_delete(*, customer: Customer) -> None:
    """Delete a customer that was never billed; one with history must be archived instead."""
    if customer_has_billing_history(customer=customer):
        raise CustomerHasBillingHistory(f"{customer} has billing history: archive it instead of deleting it.")
    customer.delete()


# --- CSV import -----------------------------------------------------------------------------------------

IMPORT_COLUMNS = (
    "external_id",
    "name",
    "legal_name",
    "email",
    "cc_emails",
    "phone",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "region",
    "country",
    "tax_id",
    "tax_status",
    "currency",
    "payment_terms_days",
    "language",
    "notes",
)
REQUIRED_COLUMNS = ("name", "email", "country")
# Codes people type in either case; stored upper-case as the admin's choices have them.
_UPPER_CASE_COLUMNS = ("country", "currency")


class CustomerImportForm(forms.ModelForm):
    """Validates one CSV row exactly as the admin validates a customer (model ``clean`` included)."""

    class Meta:
        model = Customer
        fields = list(IMPORT_COLUMNS)

    def _post_clean(self) -> None:
        # Model.full_clean checks every CheckConstraint with its own query inside a savepoint: about twenty round
        # trips a row, 50 rows a second. Each customer constraint is also a field validator or part of
        # Customer.clean, the import matches external ids itself (no duplicates), and PostgreSQL still enforces
        # all of them on save — so rows are validated in Python only.
        self.instance.validate_constraints = _skip_constraint_queries  # type: ignore[method-assign]
        try:
            super()._post_clean()  # type: ignore[misc]
        finally:
            del self.instance.validate_constraints


def _skip_constraint_queries(exclude: object = None) -> None:
    return None


# A problem in the file: row (the header is line 1), column, message.
ImportRowError = RowError


@dataclass(kw_only=True)
class ImportReport(imports.ImportReport):
    counters = ("created", "updated", "unchanged")

    created: int = 0
    updated: int = 0
    unchanged: int = 0

    def outcome(self) -> str:
        prefix = "Dry run: would create" if self.dry_run else "Created"
        verb = "update" if self.dry_run else "updated"
        return f"{prefix} {self.created}, {verb} {self.updated}, unchanged {self.unchanged}."


class CustomerImportError(imports.DataImportError):
    report: ImportReport


def customers_import_csv(*, stream: IO[bytes] | IO[str], dry_run: bool = False) -> ImportReport:
    """Import customers from CSV, all or nothing.

    Every row is validated first (same rules as the admin form); if any row is bad, the report lists each
    problem by row and column and nothing is written. Rows match existing customers by ``external_id``, else by
    billing e-mail (case-insensitive), so importing the same file again updates instead of duplicating.
    Raises ``CustomerImportError`` carrying the report when the file is rejected.
    """
    report = ImportReport(dry_run=dry_run)
    try:
        header, rows = read_csv(stream, max_bytes=settings.IMPORT_MAX_BYTES, max_rows=settings.IMPORT_MAX_ROWS)
    except CsvFileError as exc:
        report.errors.extend(exc.errors)
        raise CustomerImportError(report) from exc
    except (ValueError, csv.Error) as exc:
        report.errors.append(ImportRowError(row=1, column="(file)", message=str(exc)))
        raise CustomerImportError(report) from exc
    if not header:
        report.errors.append(ImportRowError(row=1, column="(file)", message="the file is empty"))
        raise CustomerImportError(report)
    report.rows = len(rows)

    unknown = [h for h in header if h and h not in IMPORT_COLUMNS]
    for column in unknown:
        report.errors.append(ImportRowError(row=1, column=column, message="unknown column"))
    for column in REQUIRED_COLUMNS:
        if column not in header:
            report.errors.append(ImportRowError(row=1, column=column, message="required column is missing"))
    if not rows and not report.errors:
        report.errors.append(ImportRowError(row=2, column="(file)", message="the file has no data rows"))
    if report.errors:
        raise CustomerImportError(report)

    with transaction.atomic():
        existing_by_external_id, existing_by_email = _existing_customers(rows)
        seen_keys: dict[str, int] = {}
        planned: list[tuple[Customer | None, CustomerImportForm, bool]] = []
        for row in rows:
            index = row.row
            data = {column: (row.get(column) or "").strip() for column in IMPORT_COLUMNS if column in header}
            for column in _UPPER_CASE_COLUMNS:
                if column in data:
                    data[column] = data[column].upper()
            external_id = data.get("external_id", "")
            email = data.get("email", "").lower()
            key = f"external_id:{external_id}" if external_id else f"email:{email}"
            if key in seen_keys:
                report.errors.append(
                    ImportRowError(
                        row=index,
                        column="external_id" if external_id else "email",
                        message=f"duplicate of row {seen_keys[key]} in this file",
                    )
                )
                continue
            seen_keys[key] = index
            instance: Customer | None
            if external_id:
                instance = existing_by_external_id.get(external_id)
            else:
                matches = existing_by_email.get(email, [])
                if len(matches) > 1:
                    report.errors.append(
                        ImportRowError(
                            row=index,
                            column="email",
                            message=f"{len(matches)} customers share this e-mail; add an external_id to choose",
                        )
                    )
                    continue
                instance = matches[0] if matches else None
            before = _field_values(instance) if instance is not None else None
            form = CustomerImportForm(data=_with_defaults(data, instance), instance=instance)
            if not form.is_valid():
                for column, messages in form.errors.items():
                    for message in messages:
                        report.errors.append(
                            ImportRowError(
                                row=index, column=column if column != "__all__" else "(row)", message=str(message)
                            )
                        )
                continue
            changed = before is None or _field_values(form.instance) != before
            planned.append((instance, form, changed))

        if report.errors:
            raise CustomerImportError(report)

        for instance, form, changed in planned:
            if instance is None:
                report.created += 1
            elif changed:
                report.updated += 1
            else:
                report.unchanged += 1
                continue
            if not dry_run:
                form.save()
        if dry_run:
            transaction.set_rollback(True)
    return report


# An empty cell in these columns means "the default" for a new customer and "keep" for an existing one;
# an empty cell elsewhere is taken as written (it clears an optional field, or fails a required one).
_DEFAULTABLE_COLUMNS = ("tax_status", "currency", "payment_terms_days", "language")


def _with_defaults(data: dict[str, str], instance: Customer | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    for column in IMPORT_COLUMNS:
        value = data.get(column)
        if value is None or (value == "" and column in _DEFAULTABLE_COLUMNS):
            if instance is not None:
                merged[column] = str(getattr(instance, column) or "")
            else:
                model_field = Customer._meta.get_field(column)
                assert isinstance(model_field, models.Field)
                default = model_field.get_default()
                merged[column] = "" if default is None else str(default)
        else:
            merged[column] = value
    return merged


def _field_values(customer: Customer) -> dict[str, object]:
    return {column: getattr(customer, column) for column in IMPORT_COLUMNS}


def _existing_customers(
    rows: Sequence[Mapping[str, str]],
) -> tuple[dict[str, Customer], dict[str, list[Customer]]]:
    """Two queries for the whole file instead of two per row; rows are locked so that two imports of the same
    file at once cannot both create the same customer."""
    external_ids = {(r.get("external_id") or "").strip() for r in rows} - {""}
    emails = {(r.get("email") or "").strip().lower() for r in rows if not (r.get("external_id") or "").strip()}
    by_external_id = {
        c.external_id: c
        for c in Customer.objects.select_for_update().filter(external_id__in=external_ids).order_by("pk")
    }
    by_email: dict[str, list[Customer]] = {}
    if emails:
        for c in (
            Customer.objects.select_for_update()
            .annotate(email_lower=Lower("email"))
            .filter(email_lower__in=emails)
            .order_by("pk")
        ):
            by_email.setdefault(c.email.lower(), []).append(c)
    return by_external_id, by_email
