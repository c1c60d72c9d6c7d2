from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, URLResolver, get_script_prefix, path, reverse
from django.utils import timezone
from django.utils.text import capfirst

from billing_project.staff_auth import ThrottledAdminAuthenticationForm, otp_setup_view, otp_verify_view
from core.admin_errors import ApplicationErrorsAdminSite


class BillingAdminSite(ApplicationErrorsAdminSite):
    site_header = settings.PRODUCT_NAME
    site_title = settings.PRODUCT_NAME
    index_title = "Back-office"
    # Failed sign-ins are counted per username and address (billing_project.staff_auth).
    login_form = ThrottledAdminAuthenticationForm

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """The app list, with the dashboard (reporting.dashboard) above it for staff who may view
        invoices."""
        from billing_project.jobs import metrics_refresh_now_url
        from core.dates import billing_today
        from reporting.dashboard import dashboard_context
        from reporting.metrics import latest_refresh
        from reporting.reports import PERMISSION

        context = dict(extra_context or {})
        if request.user.has_perm(PERMISSION):
            as_of = billing_today()
            # The figures aggregate over every invoice and subscription: computed at most once a minute per
            # set of permissions (links depend on them), so the busiest page of the admin stays cheap.
            user = request.user
            # a superuser has every permission without a query
            permissions = "*" if user.is_superuser else ",".join(sorted(user.get_all_permissions()))
            # A new metrics snapshot (the job, "Refresh now") shows at once: its id is part of the key.
            refresh = latest_refresh()
            snapshot = refresh.pk if refresh else 0
            key = f"admin-dashboard:{as_of}:{snapshot}:{hashlib.sha256(permissions.encode()).hexdigest()[:16]}"
            dashboard = cache.get(key)
            if dashboard is None:
                dashboard = dashboard_context(as_of=as_of, user=request.user, refresh=refresh)
                dashboard["computed_at"] = timezone.now()
                dashboard["refresh_now_url"] = metrics_refresh_now_url(user)  # per permission set, as the key
                cache.set(key, dashboard, settings.DASHBOARD_CACHE_SECONDS)
            context["dashboard"] = dashboard
            # the currency switcher: one currency's figures at a time, the house currency first
            currencies = dashboard["currencies"]
            chosen = request.GET.get("currency", "")
            context["dashboard_currency"] = chosen if chosen in currencies else (currencies[0] if currencies else "")
        return super().index(request, extra_context=context)

    def _admin_url(self, name: str, **kwargs: str) -> str | None:
        """``reverse("admin:<name>")``, remembered per process (and script prefix): the list of models needs ~100
        of them on every admin page, at ~20 µs each, and they never change. ``None`` where there is no such URL."""
        key = (name, tuple(sorted(kwargs.items())), get_script_prefix())
        urls: dict[Any, str | None] = self.__dict__.setdefault("_admin_urls", {})
        if key not in urls:
            try:
                urls[key] = reverse(f"admin:{name}", kwargs=kwargs or None, current_app=self.name)
            except NoReverseMatch:
                urls[key] = None
        return urls[key]

    def _build_app_dict(self, request: HttpRequest, label: Any = None) -> dict[str, Any]:
        # Django 5.2's AdminSite._build_app_dict, with the URLs from ``_admin_url``: the same permissions checks and
        # the same dictionaries (compared in tests/billing_project/test_admin_app_list.py).
        app_dict: dict[str, Any] = {}
        registry = self._registry
        models = {m: a for m, a in registry.items() if m._meta.app_label == label} if label else registry
        for model, model_admin in models.items():
            app_label = model._meta.app_label
            has_module_perms = model_admin.has_module_permission(request)
            if not has_module_perms:
                continue
            perms = model_admin.get_model_perms(request)
            if True not in perms.values():
                continue
            model_name = model._meta.model_name
            model_dict: dict[str, Any] = {
                "model": model,
                "name": capfirst(model._meta.verbose_name_plural),
                "object_name": model._meta.object_name,
                "perms": perms,
                "admin_url": None,
                "add_url": None,
            }
            if perms.get("change") or perms.get("view"):
                model_dict["view_only"] = not perms.get("change")
                model_dict["admin_url"] = self._admin_url(f"{app_label}_{model_name}_changelist")
            if perms.get("add"):
                model_dict["add_url"] = self._admin_url(f"{app_label}_{model_name}_add")
            if app_label in app_dict:
                app_dict[app_label]["models"].append(model_dict)
            else:
                app_url = self._admin_url("app_list", app_label=app_label)
                if app_url is None:  # as Django: an app without its URL is an error, not a missing link
                    raise NoReverseMatch(f"no admin:app_list for {app_label}")
                app_dict[app_label] = {
                    "name": apps.get_app_config(app_label).verbose_name,
                    "app_label": app_label,
                    "app_url": app_url,
                    "has_module_perms": has_module_perms,
                    "models": [model_dict],
                }
        return app_dict

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        # The dashboard asks twice (its list of models and the sidebar's): the permission checks and URLs once.
        if app_label is not None:
            return super().get_app_list(request, app_label)
        app_list: list[Any] | None = getattr(request, "_admin_app_list", None)
        if app_list is None:
            app_list = super().get_app_list(request)
            request._admin_app_list = app_list  # type: ignore[attr-defined]
        return app_list

    def get_urls(self) -> list[URLResolver | URLPattern]:
        from billing_project.jobs import metrics_refresh_now_url
        from reporting import forecast_admin, reports

        # Before the default URLs: their catch-all "<app_label>/" would otherwise take "reports/".
        return [
            # Two-factor authentication of staff (billing_project.staff_auth); the middleware lets these through.
            path("otp/setup/", self.admin_view(partial(otp_setup_view, site=self)), name="otp_setup"),
            path("otp/verify/", self.admin_view(partial(otp_verify_view, site=self)), name="otp_verify"),
            path(
                "reports/",
                self.admin_view(partial(reports.reports_index_view, site=self)),
                name="reports",
            ),
            path(
                "reports/forecast/",
                self.admin_view(partial(forecast_admin.forecast_view, site=self)),
                name="forecast",
            ),
            path(
                "reports/forecast/compare/",
                self.admin_view(partial(forecast_admin.forecast_compare_view, site=self)),
                name="forecast_compare",
            ),
            path(
                "reports/<slug:slug>/",
                self.admin_view(partial(reports.report_view, site=self, refresh_now=metrics_refresh_now_url)),
                name="report",
            ),
            *super().get_urls(),
        ]
