"""Admin of the ledger sync: the connections (Connect → the provider's OAuth screen → callback) and the sync log
with its "Retry" action. Registered from accounting/admin.py."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from accounting.ledger import oauth
from accounting.ledger.clients import LedgerError
from accounting.ledger.models import LedgerConnection, LedgerProvider, SyncRecord, SyncStatus
from accounting.ledger.sync import ledger_retry
from accounting.tasks import sync_ledger

CONNECT_PERMISSION = "accounting.connect_ledgerconnection"


@admin.register(LedgerConnection)
class LedgerConnectionAdmin(admin.ModelAdmin):
    """One row per connected provider. Tokens are never shown (they are stored encrypted)."""

    change_list_template = "admin/accounting/ledgerconnection/change_list.html"
    list_display = (
        "provider",
        "tenant_name",
        "tenant_id",
        "is_active",
        "sync_from",
        "last_sync_at",
        "last_sync_summary",
    )
    fields = (
        "provider",
        "tenant_id",
        "tenant_name",
        "is_active",
        "sync_from",
        "connected_at",
        "connected_by",
        "access_token_expires_at",
        "last_sync_at",
        "last_sync_summary",
        "records_link",
    )
    readonly_fields = (
        "provider",
        "tenant_id",
        "tenant_name",
        "connected_at",
        "connected_by",
        "access_token_expires_at",
        "last_sync_at",
        "last_sync_summary",
        "records_link",
    )
    actions = ("sync_now",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a connection is made by the OAuth flow ("Connect"), never typed in

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # its sync log is what keeps the ledger free of duplicates: switch it off ("active") instead
        return False

    @admin.display(description="sync log")
    def records_link(self, obj: LedgerConnection) -> str:
        url = reverse("admin:accounting_syncrecord_changelist") + f"?connection__id__exact={obj.pk}"
        failed = obj.records.filter(status=SyncStatus.FAILED).count()
        return format_html('<a href="{}">{} records</a>, {} failed', url, obj.records.count(), failed)

    @admin.action(description="Sync now (in the background)", permissions=["connect"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[LedgerConnection]) -> None:
        for connection in queryset.filter(is_active=True):
            transaction.on_commit(partial(sync_ledger.delay, provider=connection.provider), robust=True)
            self.message_user(request, f"{connection}: sync queued.", messages.SUCCESS)

    def has_connect_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CONNECT_PERMISSION)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {
            "ledger_providers": [
                (provider.label, reverse("admin:accounting_ledgerconnection_connect", args=[provider.value]))
                for provider in LedgerProvider
            ]
            if self.has_connect_permission(request)
            else [],
            **(extra_context or {}),
        }
        return super().changelist_view(request, extra)

    def get_urls(self) -> list[Any]:
        return [
            path(
                "connect/<str:provider>/",
                self.admin_site.admin_view(self.connect_view),
                name="accounting_ledgerconnection_connect",
            ),
            path(
                "callback/<str:provider>/",
                self.admin_site.admin_view(self.callback_view),
                name="accounting_ledgerconnection_callback",
            ),
            *super().get_urls(),
        ]

    def _page(self, request: HttpRequest, *, title: str, status: int = 200, **context: Any) -> TemplateResponse:
        return TemplateResponse(
            request,
            "admin/accounting/ledger_connect.html",
            {**self.admin_site.each_context(request), "opts": self.model._meta, "title": title, **context},
            status=status,
        )

    def connect_view(self, request: HttpRequest, provider: str) -> HttpResponse:
        """GET: what will happen; POST: a fresh state in the session, then off to the provider's authorize page."""
        if not self.has_connect_permission(request):
            raise PermissionDenied
        if provider not in LedgerProvider.values:
            return self._page(request, title="Connect a ledger", error=f"Unknown provider {provider!r}.", status=404)
        label = LedgerProvider(provider).label
        if request.method == "POST":
            try:
                url = oauth.oauth_start(session=request.session, provider=provider)
            except (LedgerError, ImproperlyConfigured) as exc:
                return self._page(request, title=f"Connect {label}", error=str(exc), status=400)
            return HttpResponseRedirect(url)
        existing = LedgerConnection.objects.filter(provider=provider).first()
        return self._page(request, title=f"Connect {label}", provider_label=label, existing=existing, confirm=True)

    def callback_view(self, request: HttpRequest, provider: str) -> HttpResponse:
        """The provider sends the staff member back here with ?code=…&state=… (QuickBooks adds &realmId=…)."""
        if not self.has_connect_permission(request):
            raise PermissionDenied
        if provider not in LedgerProvider.values:
            return self._page(request, title="Connect a ledger", error=f"Unknown provider {provider!r}.", status=404)
        label = LedgerProvider(provider).label
        if not request.GET:
            return self._page(
                request, title=f"Connect {label}", error="Nothing to complete: start with Connect on the ledgers page."
            )
        try:
            connection = oauth.oauth_complete(
                session=request.session, provider=provider, params=request.GET.dict(), actor=request.user
            )
        except (LedgerError, ImproperlyConfigured) as exc:
            return self._page(request, title=f"Connect {label}", error=str(exc), status=400)
        except Exception as exc:  # the token endpoint down, a timeout: staff start again
            return self._page(request, title=f"Connect {label}", error=f"{label} did not answer: {exc}", status=502)
        self.log_change(request, connection, f"Connected {label}")
        self.message_user(request, f"{connection} connected.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:accounting_ledgerconnection_change", args=[connection.pk]))


@admin.register(SyncRecord)
class SyncRecordAdmin(admin.ModelAdmin):
    """The sync log: one row per record pushed (or refused), with the provider's message."""

    list_display = ("object_type", "reference", "connection", "status", "external_id", "attempts", "synced_at", "error")
    list_filter = ("status", "object_type", "connection")
    list_select_related = ("connection",)
    search_fields = ("reference", "external_id")
    show_full_result_count = False
    list_per_page = 100
    actions = ("retry",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # written by the sync only

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a deleted record would be pushed again (and linked by its number at best)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounting.retry_syncrecord")

    @admin.display(description="last error")
    def error(self, obj: SyncRecord) -> str:
        return obj.last_error[:160]

    @admin.action(description="Retry the selected failed records", permissions=["retry"])
    def retry(self, request: HttpRequest, queryset: QuerySet[SyncRecord]) -> None:
        failed = list(queryset.filter(status=SyncStatus.FAILED).select_related("connection"))
        if not failed:
            self.message_user(request, "None of the selected records has failed.", messages.WARNING)
            return
        for outcome in ledger_retry(records=failed):
            level = messages.SUCCESS if not outcome.failed and not outcome.stopped else messages.WARNING
            self.message_user(request, f"{LedgerProvider(outcome.provider).label}: {outcome.summary}.", level)
