from __future__ import annotations

import hashlib
from functools import partial
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path
from django.utils import timezone

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
        from core.dates import billing_today
        from reporting.dashboard import dashboard_context
        from reporting.reports import PERMISSION

        context = dict(extra_context or {})
        if request.user.has_perm(PERMISSION):
            as_of = billing_today()
            # The figures aggregate over every invoice and subscription: computed at most once a minute per
            # set of permissions (links depend on them), so the busiest page of the admin stays cheap.
            user = request.user
            # a superuser has every permission without a query
            permissions = "*" if user.is_superuser else ",".join(sorted(user.get_all_permissions()))
            key = f"admin-dashboard:{as_of}:{hashlib.sha256(permissions.encode()).hexdigest()[:16]}"
            dashboard = cache.get(key)
            if dashboard is None:
                dashboard = dashboard_context(as_of=as_of, user=request.user)
                dashboard["computed_at"] = timezone.now()
                cache.set(key, dashboard, settings.DASHBOARD_CACHE_SECONDS)
            context["dashboard"] = dashboard
            # the currency switcher: one currency's figures at a time, the house currency first
            currencies = dashboard["currencies"]
            chosen = request.GET.get("currency", "")
            context["dashboard_currency"] = chosen if chosen in currencies else (currencies[0] if currencies else "")
        return super().index(request, extra_context=context)

    def get_urls(self) -> list[URLResolver | URLPattern]:
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
                self.admin_view(partial(reports.report_view, site=self)),
                name="report",
            ),
            *super().get_urls(),
        ]
