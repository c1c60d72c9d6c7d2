"""Staff screens of the webhooks app: endpoints (the secret shown once at creation and at each rotation) and the
delivery log (attempts with response code, first 1 kB of the response, duration; "Resend")."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from core.admin_pages import object_action_page
from core.admin_readonly import ReadOnlyMixin
from core.audit import AuditTrailMixin
from core.errors import ApplicationError
from webhooks import services
from webhooks.addresses import url_check
from webhooks.catalog import EVENT_TYPES
from webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint

SHOWN_ONCE_INTRO = (
    "Copy the signing secret now: it is not shown again. The receiver verifies each request with it "
    "(docs/WEBHOOKS.md: standardwebhooks.Webhook(secret).verify(body, headers))."
)


class WebhookEndpointForm(forms.ModelForm):
    url = forms.URLField(label="URL", max_length=2000, assume_scheme="https", widget=forms.URLInput(attrs={"size": 90}))
    event_types = forms.MultipleChoiceField(
        choices=[(event_type, f"{event_type} — {meaning}") for event_type, meaning in EVENT_TYPES.items()],
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Leave all unticked to receive every event type.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ("url", "description", "event_types", "enabled")

    def clean_url(self) -> str:
        url = self.cleaned_data["url"]
        try:
            url_check(url, require_resolution=False)
        except ApplicationError as exc:
            raise ValidationError(exc.message) from exc
        return url


class DisabledFilter(admin.SimpleListFilter):
    title = "disabled"
    parameter_name = "disabled"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("sender", "By the sender (failing for days)"), ("staff", "By staff")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "sender":
            return queryset.filter(enabled=False, disabled_at__isnull=False)
        if self.value() == "staff":
            return queryset.filter(enabled=False, disabled_at__isnull=True)
        return queryset


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(AuditTrailMixin, admin.ModelAdmin):
    form = WebhookEndpointForm
    list_display = ("__str__", "url", "subscribed", "enabled", "health")
    list_filter = ("enabled", DisabledFilter)
    search_fields = ("url", "description")
    show_full_result_count = False
    readonly_fields = (
        "signing_secret",
        "signing_secret_rotate",
        "failing_since",
        "disabled_at",
        "disabled_reason",
        "created_at",
        "created_by",
        "delivery_log",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": ("url", "description", "event_types", "enabled")})]
        may_rotate = request.user.has_perm("webhooks.rotate_secret_webhookendpoint")
        secret = "signing_secret_rotate" if may_rotate else "signing_secret"
        fieldsets = [
            (None, {"fields": ("url", "description", "event_types", "enabled", secret)}),
            (
                "Health",
                {
                    "fields": (
                        "failing_since",
                        "disabled_at",
                        "disabled_reason",
                        "delivery_log",
                        "created_at",
                        "created_by",
                    )
                },
            ),
        ]
        return [*fieldsets, ("Audit trail", {"classes": ("audit",), "fields": ("audit_trail",)})]

    @admin.display(description="health")
    def health(self, endpoint: WebhookEndpoint) -> str:
        if endpoint.disabled_at:
            return f"disabled by the sender {timezone.localtime(endpoint.disabled_at):%Y-%m-%d %H:%M}"
        if endpoint.failing_since:
            return f"failing since {timezone.localtime(endpoint.failing_since):%Y-%m-%d %H:%M}"
        return "ok" if endpoint.enabled else "switched off"

    @admin.display(description="event types")
    def subscribed(self, endpoint: WebhookEndpoint) -> str:
        return ", ".join(endpoint.event_types) if endpoint.event_types else "all"

    @admin.display(description="signing secret")
    def signing_secret(self, endpoint: WebhookEndpoint) -> str:
        return endpoint.secret_hint

    @admin.display(description="signing secret")
    def signing_secret_rotate(self, endpoint: WebhookEndpoint) -> str:
        url = reverse("admin:webhooks_webhookendpoint_rotate", args=[endpoint.pk])
        return format_html(
            '{} <a class="button" href="{}" data-action="rotate-secret">Rotate secret</a>', endpoint.secret_hint, url
        )

    @admin.display(description="deliveries")
    def delivery_log(self, endpoint: WebhookEndpoint) -> str:
        url = reverse("admin:webhooks_webhookdelivery_changelist") + f"?endpoint__id__exact={endpoint.pk}"
        return format_html('<a href="{}">Delivery log of this endpoint</a>', url)

    def save_model(self, request: HttpRequest, obj: WebhookEndpoint, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            saved = services.endpoint_update(
                endpoint=obj,
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
                enabled=data["enabled"],
            )
        else:
            created = services.endpoint_create(
                url=data["url"],
                event_types=data["event_types"],
                description=data["description"],
                enabled=data["enabled"],
                actor=request.user,
            )
            saved = created.endpoint
            request._webhook_secret = created.secret  # type: ignore[attr-defined]
        obj.pk = saved.pk
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        pass  # no relations; the service saved everything

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue: str | None = None) -> Any:
        """The new secret, once, instead of the usual redirect."""
        return self._secret_page(request, obj, request._webhook_secret, title="Webhook endpoint created")  # type: ignore[attr-defined]

    def _secret_page(
        self, request: HttpRequest, endpoint: WebhookEndpoint, secret: str, *, title: str
    ) -> TemplateResponse:
        response = object_action_page(
            self,
            request,
            original=endpoint,
            title=title,
            submit_label="",
            intro=SHOWN_ONCE_INTRO,
            subject_rows=[("Endpoint", endpoint.url), ("Signing secret", secret)],
        )
        response["Cache-Control"] = "no-store"
        return response

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:object_id>/rotate/",
                self.admin_site.admin_view(self.rotate_view),
                name="webhooks_webhookendpoint_rotate",
            ),
            *super().get_urls(),
        ]

    def rotate_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not request.user.has_perm("webhooks.rotate_secret_webhookendpoint"):
            raise PermissionDenied
        endpoint = get_object_or_404(WebhookEndpoint, pk=object_id)
        if request.method == "POST":
            secret = services.endpoint_rotate_secret(endpoint=endpoint)
            self.log_change(request, endpoint, "Rotated the signing secret")
            return self._secret_page(request, endpoint, secret, title="Signing secret rotated")
        return object_action_page(
            self,
            request,
            original=endpoint,
            title="Rotate the signing secret",
            submit_label="Rotate secret",
            intro="A new secret signs every request from now on. The current one keeps signing beside it for "
            "24 hours (two signatures in webhook-signature), so the receiver can switch without refusing a message.",
            subject_rows=[("Endpoint", endpoint.url), ("Current secret", endpoint.secret_hint)],
        )


class WebhookAttemptInline(ReadOnlyMixin, admin.TabularInline):
    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ("attempted_at", "succeeded", "response_status", "duration_ms", "response_body", "error")
    readonly_fields = fields


class EventTypeFilter(admin.SimpleListFilter):
    """From the catalog, not a SELECT DISTINCT over the whole log."""

    title = "event type"
    parameter_name = "event_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(event_type, event_type) for event_type in EVENT_TYPES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(event_type=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The delivery log: read-only but for "Resend"."""

    list_display = ("created", "event_type", "status", "attempts", "code", "next_attempt", "endpoint_short")
    list_filter = ("status", EventTypeFilter, "endpoint")
    list_select_related = ("endpoint",)
    search_fields = ("=event__id",)
    show_full_result_count = False
    date_hierarchy = "created_at"
    actions = ("resend",)
    inlines = (WebhookAttemptInline,)
    fields = (
        "event_link",
        "endpoint",
        "event_type",
        "webhook_id_shown",
        "status",
        "attempts",
        "chain_started_at",
        "next_attempt_at",
        "last_attempt_at",
        "response_status",
        "duration_ms",
        "response_body",
        "last_error",
        "succeeded_at",
        "resent_at",
        "resent_by",
        "body",
        "resend_button",
    )
    readonly_fields = fields

    @admin.display(description="endpoint", ordering="endpoint")
    def endpoint_short(self, delivery: WebhookDelivery) -> str:
        name = str(delivery.endpoint)
        return name if len(name) <= 24 else f"{name[:23]}…"

    @admin.display(description="created", ordering="created_at")
    def created(self, delivery: WebhookDelivery) -> str:
        return f"{timezone.localtime(delivery.created_at):%Y-%m-%d %H:%M}"

    @admin.display(description="code", ordering="response_status")
    def code(self, delivery: WebhookDelivery) -> str:
        return str(delivery.response_status or "—")

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def next_attempt(self, delivery: WebhookDelivery) -> str:
        return f"{timezone.localtime(delivery.next_attempt_at):%Y-%m-%d %H:%M}" if delivery.next_attempt_at else "—"

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("webhooks.resend_webhookdelivery")

    @admin.display(description="event")
    def event_link(self, delivery: WebhookDelivery) -> str:
        url = reverse("admin:core_domainevent_change", args=[delivery.event_id])
        return format_html('<a href="{}">#{} {}</a>', url, delivery.event_id, delivery.event_type)

    @admin.display(description="webhook-id")
    def webhook_id_shown(self, delivery: WebhookDelivery) -> str:
        return delivery.webhook_id

    @admin.display(description="request body")
    def body(self, delivery: WebhookDelivery) -> str:
        try:
            pretty = json.dumps(json.loads(delivery.payload), indent=2, ensure_ascii=False)
        except ValueError:
            pretty = delivery.payload
        return format_html('<pre class="webhook-body">{}</pre>', pretty)

    @admin.display(description="resend")
    def resend_button(self, delivery: WebhookDelivery) -> str:
        url = reverse("admin:webhooks_webhookdelivery_resend", args=[delivery.pk])
        return format_html('<a class="button" href="{}" data-action="resend">Resend</a>', url)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_fields(request, obj))
        return fields if self.has_resend_permission(request) else tuple(f for f in fields if f != "resend_button")

    def get_urls(self) -> list[Any]:
        return [
            path(
                "<int:object_id>/resend/",
                self.admin_site.admin_view(self.resend_view),
                name="webhooks_webhookdelivery_resend",
            ),
            *super().get_urls(),
        ]

    def resend_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        if not self.has_resend_permission(request):
            raise PermissionDenied
        delivery = get_object_or_404(WebhookDelivery.objects.select_related("endpoint"), pk=object_id)
        if request.method == "POST":
            services.delivery_resend(delivery=delivery, actor=request.user)
            self.log_change(request, delivery, "Resent")
            self.message_user(request, f"Delivery #{delivery.pk} queued again.", messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:webhooks_webhookdelivery_change", args=[delivery.pk]))
        return object_action_page(
            self,
            request,
            original=delivery,
            title="Resend this webhook",
            submit_label="Resend",
            intro="The same body under the same webhook-id is sent again now, with retries for 72 hours if it fails; "
            "a receiver that processed it already ignores it.",
            subject_rows=[
                ("Endpoint", delivery.endpoint.url),
                ("Event", f"#{delivery.event_id} {delivery.event_type}"),
                ("Status", delivery.get_status_display()),
                ("Attempts so far", delivery.attempts),
            ],
            refusal="" if delivery.endpoint.enabled else "The endpoint is disabled: enable it first.",
        )

    @admin.action(description="Resend the selected deliveries", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        deliveries = list(queryset.select_related("endpoint").order_by("pk"))
        resent, refusals = services.deliveries_resend(deliveries=deliveries, actor=request.user)
        for delivery in deliveries:
            self.log_change(request, delivery, "Resent")
        if resent:
            self.message_user(request, f"{resent} deliveries queued again.", messages.SUCCESS)
        if refusals:
            self.message_user(request, "Not resent: " + "; ".join(refusals), messages.ERROR)
