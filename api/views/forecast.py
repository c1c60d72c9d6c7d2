"""The forecast (reporting/forecast.py): ``GET /api/v1/forecast?days=N&as_of=DATE``, read scope; the same figures
as the admin's forecast page and ``manage.py forecast --json``, from the same cache."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from api.problems import ApiProblem
from api.views.base import AS_OF_PARAMETER, ApiViewSet
from reporting.forecast import MAX_DAYS, ForecastError, forecast_cached

_AMOUNT = serializers.CharField(help_text='Decimal in the currency\'s minor unit, e.g. "571.20".')

ForecastDayOut = inline_serializer(
    "ForecastDay",
    {
        "date": serializers.DateField(),
        "currency": serializers.CharField(),
        "invoices": serializers.IntegerField(help_text="Invoices the billing run will issue (drafts apart)."),
        "net": _AMOUNT,
        "tax": _AMOUNT,
        "total": _AMOUNT,
        "renewals": serializers.IntegerField(),
        "new": serializers.IntegerField(),
        "trial_conversions": serializers.IntegerField(),
        "plan_changes": serializers.IntegerField(),
        "final_invoices": serializers.IntegerField(),
        "cancellations": serializers.IntegerField(help_text="Subscriptions that end (canceled at period end)."),
        "drafts": serializers.IntegerField(help_text="Invoices the run will hold for review."),
        "drafts_total": _AMOUNT,
        "credit": _AMOUNT,
        "charges": serializers.IntegerField(help_text="Automatic charges to attempt (first charges and retries)."),
        "charges_amount": _AMOUNT,
        "reminders": serializers.IntegerField(),
        "late_fees": serializers.IntegerField(),
        "late_fees_amount": _AMOUNT,
        "cash_in": _AMOUNT,
    },
)

ForecastOut = inline_serializer(
    "Forecast",
    {
        "object": serializers.CharField(help_text='"forecast"'),
        "as_of": serializers.DateField(),
        "horizon_days": serializers.IntegerField(),
        "computed_at": serializers.DateTimeField(),
        "unknown": serializers.ListField(child=serializers.CharField(), help_text="What a forecast cannot know."),
        "days": serializers.ListField(child=ForecastDayOut),
    },
)

DAYS_PARAMETER = OpenApiParameter(
    "days", OpenApiTypes.INT, OpenApiParameter.QUERY, description=f"The horizon, 1–{MAX_DAYS} days; default 30."
)


class ForecastViewSet(ApiViewSet):
    @extend_schema(responses=ForecastOut, parameters=[DAYS_PARAMETER, AS_OF_PARAMETER])
    def list(self, request: Request) -> Response:
        """Per day and currency, what the billing run, the payment retries and the reminders will do from
        ``as_of`` (default today) for ``days`` days: one row per day and currency with activity."""
        raw = self.query_param("days") or "30"
        if not raw.isdigit():
            raise ApiProblem(400, f"days: {raw!r} is not a whole number.", code="invalid_input", field="days")
        try:
            forecast = forecast_cached(days=int(raw), as_of=self.query_date("as_of"))
        except ForecastError as exc:
            raise ApiProblem(400, exc.message, code="invalid_input", field="days") from exc
        return Response({"object": "forecast", **forecast.as_dict()})
