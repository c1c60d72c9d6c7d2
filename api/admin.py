"""API keys in the admin (billing admins only: staff_groups gives the api app to no other group). A key is shown
once, on the page right after it is created, and never again; staff revoke keys (an action), never delete them
(the audit trail keeps who created and revoked each)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from api.keys import api_key_create, api_key_revoke
from api.models import ApiKey, ApiScope
from core.audit import AuditTrailMixin


class ApiKeyAddForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ("name", "scope")
        help_texts = {"scope": "read: GET only. read and write: every request."}


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(AuditTrailMixin, admin.ModelAdmin):
    list_display = ("name", "key_prefix", "scope", "state", "last_used_at", "created_at", "created_by")
    list_filter = ("scope", StateFilter)
    search_fields = ("name", "prefix")
    list_select_related = ("created_by",)
    show_full_result_count = False
    readonly_fields = (
        "key_prefix",
        "scope",
        "state",
        "created_at",
        "created_by",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    )
    fieldsets = (
        (None, {"fields": ("name", "key_prefix", "scope", "state", "last_used_at")}),
        ("Who", {"fields": ("created_at", "created_by", "revoked_at", "revoked_by")}),
    )
    add_fieldsets = ((None, {"fields": ("name", "scope")}),)
    actions = ("revoke_selected",)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else super().get_readonly_fields(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the row names the key in the audit trail

    @admin.display(description="key")
    def key_prefix(self, obj: ApiKey) -> str:
        return f"ck_{obj.prefix}_…"

    @admin.display(description="state")
    def state(self, obj: ApiKey) -> str:
        return "active" if obj.is_active else format_html("<strong>revoked</strong> {}", obj.revoked_at)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            ApiKey.objects.filter(pk=obj.pk).update(name=obj.name)  # only the name is editable
            return
        new = api_key_create(name=obj.name, scope=obj.scope or ApiScope.READ, actor=request.user)
        obj.pk = new.api_key.pk
        obj.prefix = new.api_key.prefix
        obj._new_key = new.key  # type: ignore[attr-defined]  # shown by response_add, never stored

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None) -> HttpResponse:
        """The one page that shows the key (not a message: messages are kept in the session store)."""
        return TemplateResponse(
            request,
            "admin/api/apikey_created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "original": obj,
                "title": f"API key “{obj.name}” created",
                "key": getattr(obj, "_new_key", ""),
            },
        )

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key, actor=request.user)
            self.log_change(request, api_key, "Revoked the API key.")
            revoked += 1
        messages.success(request, f"Revoked {revoked} API key(s); requests with them now get 401.")
