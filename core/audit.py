"""The audit trail: old → new values of every write to the billing models, with who did it (docs/decisions/audit.md).

Recording. django-pghistory installs PostgreSQL triggers (through django-pgtrigger migrations) on each model
decorated with ``@audited``; every INSERT, UPDATE and DELETE — ``save()``, ``QuerySet.update()``, ``bulk_create``,
COPY, raw SQL — writes a snapshot row into the model's ``<Model>Audit`` table in the same statement. Nothing in
Python has to remember to log. Audit tables are append-only (a trigger refuses UPDATE and DELETE on them).

Who. Each snapshot carries the actor context as JSON (``pgh_context``): ``actor_kind`` (``staff``, ``customer``,
``system``), ``actor`` (a name people read: ``bea``, ``Acme GmbH``, ``billing run #42``) and ids. pghistory sends
it to PostgreSQL as transaction-local settings in front of each writing statement; ``audit_actor`` sets it:
``AuditActorMiddleware`` for staff requests, ``customers.portal.PortalView`` for the portal, Celery's task signals,
``core.commands.BaseCommand`` and the billing run for the jobs. An inner actor (a billing run started by a staff
member) names the outer one as ``started_by`` and gives the context back when it ends.

SQLite (``make demo``) has no triggers: nothing is recorded there, ``audit_actor`` does nothing, and the pages say
that the audit trail needs PostgreSQL.

Reading. ``AuditEvent`` (core.models) is pghistory's aggregate over every audit table, with the diff against the
previous snapshot of the same object computed in SQL; the object pages (``AuditTrailMixin``), the audit list and
the customer timeline read it with one query each.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import pghistory
import pgtrigger
from django.apps import apps
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.db import connection, models
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from moneyed import Money
from pghistory import runtime as pghistory_runtime

from core import formatting
from core.links import redact_link_tokens

ModelT = TypeVar("ModelT", bound=type[models.Model])

ACTOR_STAFF = "staff"
ACTOR_CUSTOMER = "customer"
ACTOR_SYSTEM = "system"
ACTOR_KINDS = ((ACTOR_STAFF, "staff user"), (ACTOR_CUSTOMER, "customer (portal)"), (ACTOR_SYSTEM, "system job"))
AUDIT_ROWS_SHOWN = 50
CREATED_FIELDS_SHOWN = 8
NEEDS_POSTGRESQL = (
    "The audit trail is recorded by PostgreSQL triggers; this database ({vendor}) records none (the SQLite demo). "
    "Run on PostgreSQL to see who changed what."
)


# --- what is tracked -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditSpec:
    """How the audit rows of one model are shown: which decimals are money and where their currency is — a column
    of the same row (``currency``) or of a related row (``invoice__currency``)."""

    model: type[models.Model]
    event_model: type[models.Model]
    money_fields: tuple[str, ...]
    currency: str


_SPECS: dict[str, AuditSpec] = {}  # by the tracked model's label ("invoicing.Invoice")


class _All(pgtrigger.Condition):
    """Every condition holds (pgtrigger's ``&`` only combines ``Q`` objects)."""

    def __init__(self, *conditions: pgtrigger.Condition) -> None:
        self.conditions = conditions
        self.sql = "all"

    def resolve(self, model: Any) -> str:
        return "(" + " AND ".join(f"({condition.resolve(model)})" for condition in self.conditions) + ")"


def audited(
    *,
    exclude: Sequence[str] = (),
    insert_when: pgtrigger.Condition | None = None,
    update_when: pgtrigger.Condition | None = None,
    delete_when: pgtrigger.Condition | None = None,
    money_fields: Sequence[str] = (),
    currency: str = "currency",
    app_label: str | None = None,
) -> Callable[[ModelT], ModelT]:
    """Record every insert, change and delete of the decorated model in ``<Model>Audit``.

    ``exclude`` fields are neither stored nor compared (secrets, counters a scheduler bumps). The ``*_when``
    conditions narrow what is recorded (``OLD``/``NEW`` rows); an update is recorded only when a stored field other
    than an ``auto_now`` timestamp changed. ``money_fields`` are decimals shown as money in ``currency`` (a column
    of the row, or ``relation__column``); django-money's MoneyFields are found by themselves."""

    def decorate(model: ModelT) -> ModelT:
        def condition(*parts: pgtrigger.Condition | None) -> Any:
            present = [part for part in parts if part is not None]
            return _All(*present) if len(present) > 1 else (present[0] if present else None)

        changed = pgtrigger.AnyChange(exclude=list(exclude), exclude_auto=True)
        event_model = pghistory.create_event_model(
            model,
            pghistory.InsertEvent(condition=condition(insert_when)),
            pghistory.UpdateEvent(condition=condition(update_when, changed)),
            pghistory.DeleteEvent(condition=condition(delete_when)),
            exclude=list(exclude),
            obj_field=pghistory.ObjForeignKey(related_name="+", related_query_name="+"),
            context_field=pghistory.ContextJSONField(),
            append_only=True,
            model_name=f"{model.__name__}Audit",
            app_label=app_label,
            abstract=False,
            meta={
                "verbose_name": f"{model._meta.verbose_name} audit row",
                "indexes": [models.Index(fields=["pgh_created_at"], name=f"{model.__name__.lower()[:18]}_audit_at")],
            },
        )
        money = tuple(money_fields) + tuple(
            field.name for field in model._meta.fields if type(field).__name__ == "MoneyField"
        )
        _SPECS[model._meta.label] = AuditSpec(model, event_model, money, currency)
        return model

    return decorate


def audit_specs() -> list[AuditSpec]:
    return sorted(_SPECS.values(), key=lambda spec: spec.model._meta.label)


def audit_enabled() -> bool:
    return connection.vendor == "postgresql"


def audit_unless_skipped(name: str) -> pgtrigger.Condition:
    """A trigger condition that holds unless ``audit_skip_in_transaction(name)`` ran in this transaction."""
    return pgtrigger.Condition(f"COALESCE(CURRENT_SETTING('cadence.audit_skip_{name}', TRUE), '') <> 'on'")


@contextlib.contextmanager
def audit_skipped(name: str) -> Iterator[None]:
    """Writes inside are not recorded by triggers conditioned on ``audit_unless_skipped(name)`` — the billing run's
    line COPY, whose invoices have their own record (docs/decisions/audit.md). A transaction-local setting (a
    rollback ends it too); the statement that sets it also hands the actor context to PostgreSQL."""
    if not audit_enabled():
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL cadence.audit_skip_{name} = 'on'")  # not a SELECT: pghistory prefixes it
    _remember_applied()
    yield  # on an exception the transaction (or savepoint) rolls back, and the setting with it
    with connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL cadence.audit_skip_{name} = ''")


# --- who: the actor context ----------------------------------------------------------------------------


@contextlib.contextmanager
def audit_actor(kind: str, name: str, **ids: Any) -> Iterator[None]:
    """Every audited write inside names this actor. Nested, the inner actor wins until it ends (a job records the
    outer actor as ``started_by``) and the outer one is back after; outside PostgreSQL it does nothing."""
    if not audit_enabled():
        yield
        return
    metadata = {"actor_kind": kind, "actor": name, **{key: value for key, value in ids.items() if value is not None}}
    tracked = getattr(pghistory_runtime._tracker, "value", None)
    if tracked is None:
        with pghistory.context(**metadata):
            yield
        return
    # pghistory merges a nested context into the open one for good; keep the outer actor and give it back after.
    outer = dict(tracked.metadata)
    tracked.metadata.clear()
    tracked.metadata.update(metadata)
    if kind == ACTOR_SYSTEM and outer.get("actor_kind") and outer.get("actor") != name:  # a job someone started
        tracked.metadata["started_by"] = outer.get("started_by") or outer["actor"]
    try:
        yield
    finally:
        tracked.metadata.clear()
        tracked.metadata.update(outer)


def audit_as_staff(user: Any) -> contextlib.AbstractContextManager[None]:
    return audit_actor(ACTOR_STAFF, user.get_username(), user=user.pk)


def audit_as_customer(customer: Any, *, portal_user: Any = None) -> contextlib.AbstractContextManager[None]:
    return audit_actor(
        ACTOR_CUSTOMER,
        str(customer.name),
        customer=customer.pk,
        portal_user=getattr(portal_user, "pk", None),
        portal_email=getattr(portal_user, "email", None),
    )


def audit_as_job(name: str, **ids: Any) -> contextlib.AbstractContextManager[None]:
    return audit_actor(ACTOR_SYSTEM, name, **ids)


def audit_context_apply(cursor: Any) -> None:
    """Hand the open actor context to PostgreSQL for the rest of the transaction, before a statement that
    bypasses Django's execute wrappers (COPY). pghistory prefixes every non-SELECT statement with it; this runs one
    (``SET LOCAL``), unless this transaction already got the same context and no savepoint it was set in has been
    rolled back since (a chunk of the billing run runs four COPYs)."""
    if not audit_enabled() or _applied_key() is None or _applied_key() == _still_applied():
        return
    cursor.execute("SET LOCAL cadence.audit_context = 'set'")
    _remember_applied()


def _applied_key() -> tuple[str, str] | None:
    tracked = getattr(pghistory_runtime._tracker, "value", None)
    if tracked is None or not connection.in_atomic_block:  # in autocommit nothing carries over to the next statement
        return None
    return str(tracked.id), json.dumps(tracked.metadata, sort_keys=True, default=str)


def _remember_applied() -> None:
    key = _applied_key()
    if key is None or not connection.atomic_blocks:
        return
    connection.audit_context_applied = {  # type: ignore[attr-defined]  # per connection, so per thread
        "key": key,
        "transaction": weakref.ref(connection.atomic_blocks[0]),
        "savepoints": tuple(connection.savepoint_ids),
    }


def _still_applied() -> tuple[str, str] | None:
    """The context last applied, if it still holds: same outermost transaction, and the savepoints it was set
    under are still open (a rolled-back savepoint takes its ``SET LOCAL`` with it)."""
    applied = getattr(connection, "audit_context_applied", None)
    if not applied or not connection.atomic_blocks or applied["transaction"]() is not connection.atomic_blocks[0]:
        return None
    if tuple(connection.savepoint_ids[: len(applied["savepoints"])]) != applied["savepoints"]:
        return None
    return applied["key"]  # type: ignore[no-any-return]


class AuditActorMiddleware:
    """Writes of a signed-in staff member's request (the admin) name them; other requests name their URL until a
    view says who it is (the portal names the customer). Only writing methods, as pghistory's own middleware."""

    methods = ("POST", "PUT", "PATCH", "DELETE")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in self.methods or not audit_enabled():
            return self.get_response(request)
        user = getattr(request, "user", None)
        # a sign-in or deep link's path holds its secret: never into the audit rows (nor the SQL log)
        path = redact_link_tokens(request.path)
        if user is not None and user.is_authenticated:
            with audit_actor(ACTOR_STAFF, user.get_username(), user=user.pk, url=path):
                return self.get_response(request)
        with audit_actor("", f"web request {path}", url=path):  # until a view names the actor
            return self.get_response(request)


# --- reading -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditChange:
    field: str
    old: str
    new: str


@dataclass(frozen=True)
class AuditEntry:
    at: dt.datetime
    what: str  # "Invoice #12"
    operation: str  # created / changed / deleted
    actor_kind: str
    actor: str
    changes: tuple[AuditChange, ...]
    model_label: str
    object_id: str


def _events() -> Any:
    return apps.get_model("core", "AuditEvent").objects


def audit_rows_for(obj: models.Model, *, limit: int = AUDIT_ROWS_SHOWN) -> list[AuditEntry]:
    """The audit rows of one object, newest first (one query)."""
    if not audit_enabled():
        return []
    spec = _spec_of(type(obj))
    if spec is None:
        return []
    if spec.model._meta.proxy:  # a third-party model audited through a proxy (schedules): pghistory's tracks()
        # compares concrete models, so filter the aggregate by label and id (a small table).
        rows = _events().filter(pgh_obj_model=spec.model._meta.label, pgh_obj_id=str(obj.pk))
    else:
        rows = _events().tracks(obj)
    return audit_entries(list(rows.order_by("-pgh_created_at", "-pgh_id")[:limit]))


def _spec_of(model: type[models.Model]) -> AuditSpec | None:
    spec = _SPECS.get(model._meta.label)
    if spec is not None:
        return spec
    return next((s for s in _SPECS.values() if s.model._meta.proxy and s.model._meta.concrete_model is model), None)


def audit_rows_referencing(obj: models.Model, *, limit: int = AUDIT_ROWS_SHOWN) -> list[AuditEntry]:
    """Audit rows of ``obj`` and of every audited row that points at it (a customer's subscriptions, invoices,
    payments …), newest first (one query)."""
    if not audit_enabled():
        return []
    rows = _events().references(obj).order_by("-pgh_created_at", "-pgh_id")[:limit]
    return audit_entries(list(rows))


_OPERATIONS = {"insert": "created", "update": "changed", "delete": "deleted"}


def audit_entries(rows: Sequence[Any]) -> list[AuditEntry]:
    """``AuditEvent`` rows as entries with their changes shown for people; at most one query per model whose
    money takes its currency from a related row (invoice lines)."""
    related_currency = _related_currencies(rows)
    entries = []
    for row in rows:
        spec = _SPECS.get(row.pgh_obj_model)
        context = row.pgh_context or {}
        actor = str(context.get("actor") or "unknown (no actor context)")
        if context.get("started_by"):
            actor += f" (started by {context['started_by']})"
        data = row.pgh_data or {}
        currency = related_currency.get((row.pgh_obj_model, row.pgh_obj_id)) or ""
        columns = _columns_in_order(spec, data)
        if row.pgh_label == "update":
            diff = row.pgh_diff or {}
            pairs = [(column, diff[column][0], diff[column][1]) for column in columns if column in diff]
        elif row.pgh_label == "insert":
            pairs = [(column, None, data[column]) for column in columns if data[column] not in (None, "", {}, [])]
        else:
            pairs = []
        changes = tuple(
            AuditChange(
                field=_field_label(spec, column),
                old=display_value(spec, column, old, data, currency) if row.pgh_label == "update" else "",
                new=display_value(spec, column, new, data, currency),
            )
            for column, old, new in pairs
            if not _hidden_column(spec, column)
        )
        model_name = str(spec.model._meta.verbose_name).capitalize() if spec else row.pgh_obj_model
        entries.append(
            AuditEntry(
                at=row.pgh_created_at,
                what=f"{model_name} #{row.pgh_obj_id}",
                operation=_OPERATIONS.get(row.pgh_label, row.pgh_label),
                actor_kind=str(context.get("actor_kind") or ""),
                actor=actor,
                changes=changes,
                model_label=row.pgh_obj_model,
                object_id=str(row.pgh_obj_id),
            )
        )
    return entries


def _columns_in_order(spec: AuditSpec | None, data: dict[str, Any]) -> list[str]:
    """The snapshot's columns in the order the model declares its fields (the order of the admin's form)."""
    if spec is None:
        return sorted(data)
    declared = [field.column for field in spec.model._meta.concrete_fields if field.column in data]
    return declared + sorted(set(data) - set(declared))


def _field(spec: AuditSpec | None, column: str) -> models.Field[Any, Any] | None:
    if spec is None:
        return None
    for field in spec.model._meta.concrete_fields:
        if field.column == column:
            return field
    return None


def _field_label(spec: AuditSpec | None, column: str) -> str:
    field = _field(spec, column)
    if field is None:
        return column
    return str(field.verbose_name)


def _hidden_column(spec: AuditSpec | None, column: str) -> bool:
    """Currency columns of money fields are shown inside the amount; timestamps Django sets are noise."""
    field = _field(spec, column)
    if spec is None or field is None:
        return False
    if column.endswith("_currency") and column.removesuffix("_currency") in spec.money_fields:
        return True
    return bool(getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False) or field.primary_key)


def display_value(spec: AuditSpec | None, column: str, value: Any, row: dict[str, Any], currency: str = "") -> str:
    """A stored value as staff read it: money with its currency, choices by their label, yes/no, — for empty."""
    if value is None or value == "":
        return "—"
    field = _field(spec, column)
    if isinstance(value, Money):
        return formatting.money(value.amount, str(value.currency), "en")
    if spec is not None and field is not None and field.name in spec.money_fields:
        money_currency = row.get(f"{column}_currency") or row.get(spec.currency) or currency
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            return str(value)
        if money_currency:
            return formatting.money(amount, str(money_currency), "en")
        return f"{amount} (currency unknown)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if field is not None and field.choices:
        return str(dict(field.flatchoices).get(value, value))  # type: ignore[arg-type]
    if field is not None and field.is_relation and field.related_model is not None:
        related = str(field.related_model._meta.verbose_name)  # type: ignore[union-attr]
        return f"#{value}" if related == str(field.verbose_name) else f"{related} #{value}"
    if isinstance(value, dict | list):
        return str(value) if value else "—"
    if field is not None and field.get_internal_type() == "DecimalField":  # a quantity or a rate: "1", not "1.0000"
        try:
            return formatting.plain_decimal(Decimal(str(value)))
        except InvalidOperation:
            return str(value)
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def _related_currencies(rows: Sequence[Any]) -> dict[tuple[str, str], str]:
    """(model, object id) → currency for models whose currency lives on a related row (``invoice__currency``)."""
    wanted: dict[str, list[Any]] = {}
    for row in rows:
        spec = _SPECS.get(row.pgh_obj_model)
        if spec is not None and "__" in spec.currency and spec.money_fields:
            wanted.setdefault(row.pgh_obj_model, []).append(row)
    found: dict[tuple[str, str], str] = {}
    for label, model_rows in wanted.items():
        spec = _SPECS[label]
        relation, column = spec.currency.split("__", 1)
        fk = spec.model._meta.get_field(relation)
        related = fk.related_model
        assert related is not None and not isinstance(related, str)
        ids = {(row.pgh_data or {}).get(fk.column) for row in model_rows} - {None}  # type: ignore[union-attr]
        currency_of = dict(related._default_manager.filter(pk__in=ids).values_list("pk", column))
        for row in model_rows:
            value = currency_of.get((row.pgh_data or {}).get(fk.column))  # type: ignore[union-attr]
            if value:
                found[(label, str(row.pgh_obj_id))] = str(value)
    return found


# --- showing -------------------------------------------------------------------------------------------


def when_text(at: dt.datetime) -> str:
    """``04 Dec 2026 18:19:42`` with no-break spaces: narrow table columns do not split a time stamp."""
    return timezone.localtime(at).strftime("%d %b %Y %H:%M:%S").replace(" ", "\u00a0")


def actor_html(entry: AuditEntry) -> str:
    kind = dict(ACTOR_KINDS).get(entry.actor_kind, "unknown")
    return format_html(
        '<span class="audit-actor audit-{}">{}</span><br><small>{}</small>',
        entry.actor_kind or "none",
        entry.actor,
        kind,
    )


def changes_html(entry: AuditEntry) -> str:
    if entry.operation == "deleted":
        return "deleted"
    if not entry.changes:
        return entry.operation
    if entry.operation == "created":
        # A new row's every field would drown the page: the first CREATED_FIELDS_SHOWN, without structured data.
        shown = [change for change in entry.changes if not change.new.startswith(("{", "["))]
        more = len(entry.changes) - min(len(shown), CREATED_FIELDS_SHOWN)
        return format_html(
            "created: {}{}",
            format_html_join(", ", "{} {}", ((c.field, c.new) for c in shown[:CREATED_FIELDS_SHOWN])),
            f" … and {more} more" if more > 0 else "",
        )
    return format_html_join(
        mark_safe("<br>"),
        "{}: {} → {}",
        ((change.field, change.old, change.new) for change in entry.changes),
    )


def audit_entries_html(
    entries: Sequence[AuditEntry], *, show_object: bool = False, empty: str = "No changes recorded."
) -> str:
    if not audit_enabled():
        return NEEDS_POSTGRESQL.format(vendor=connection.vendor)
    if not entries:
        return empty
    columns = ("When", "Who", *(("What",) if show_object else ()), "Change (old → new)")
    return format_html(
        '<table class="audit-trail"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>',
        format_html_join("", "<th>{}</th>", ((column,) for column in columns)),
        format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td>" + ("<td>{}</td>" if show_object else "{}") + "<td>{}</td></tr>",
            (
                (
                    when_text(entry.at),
                    actor_html(entry),
                    entry.what if show_object else "",
                    changes_html(entry),
                )
                for entry in entries
            ),
        ),
    )


def audit_trail_html(obj: models.Model) -> str:
    return audit_entries_html(audit_rows_for(obj))


class AuditTrailMixin:
    """Adds a read-only "Audit trail" section (when, who, old → new) to the change page of an existing object."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))  # type: ignore[misc]
        return (*fields, "audit_trail") if obj is not None and "audit_trail" not in fields else fields

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = list(super().get_fieldsets(request, obj))  # type: ignore[misc]
        if obj is None:
            return fieldsets
        if "audit_trail" in flatten_fieldsets(fieldsets):  # admins without fieldsets list every read-only field
            fieldsets = [(name, {**options, "fields": _without_audit_trail(options)}) for name, options in fieldsets]
        return [*fieldsets, ("Audit trail", {"classes": ("audit",), "fields": ("audit_trail",)})]

    # True: also the rows that point at the object (an invoice's lines, a subscription's items and discounts).
    audit_include_related = False

    @admin.display(description="changes (old → new)")
    def audit_trail(self, obj: Any) -> str:
        if self.audit_include_related:
            return audit_entries_html(audit_rows_referencing(obj), show_object=True)
        return audit_trail_html(obj)


def _without_audit_trail(options: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(name for name in options.get("fields", ()) if name != "audit_trail")
