"""Products, prices (with tiers) and coupons. Written through the model forms the admin uses (the admin's
``PriceForm`` for prices), so the same validators, model rules and constraints apply; a price in use is never
edited, only archived (``subscriptions.services.price_archive``)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.fields import AmountIn, CurrencyIn, RowIn
from api.forms import save_model_form
from api.problems import ApiProblem
from api.serializers import CouponOut, PriceOut, ProductOut
from api.views.base import IDEMPOTENCY_PARAMETER, ApiViewSet
from subscriptions.admin import PriceForm
from subscriptions.models import (
    BillableMetric,
    Coupon,
    CouponDuration,
    Interval,
    Price,
    PriceTier,
    PricingModel,
    Product,
    TaxBehavior,
    UsageType,
)
from subscriptions.services import price_archive


class ProductIn(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    statement_descriptor = serializers.CharField(max_length=200, required=False, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True)
    active = serializers.BooleanField(required=False)


class ProductForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = ("name", "statement_descriptor", "description", "active")


class PriceTierIn(serializers.Serializer):
    up_to = serializers.IntegerField(min_value=1, allow_null=True, help_text="Inclusive; null for the last tier.")
    unit_amount = AmountIn(min_value=0)
    flat_amount = AmountIn(min_value=0, required=False)


class PriceIn(serializers.Serializer):
    product = RowIn(Product.objects.all())
    nickname = serializers.CharField(max_length=100, required=False, allow_blank=True)
    currency = CurrencyIn()
    unit_amount = AmountIn(min_value=0, help_text="Per unit, per package or the flat fee; may have more decimals.")
    interval = serializers.ChoiceField(choices=Interval.values, required=False)
    interval_count = serializers.IntegerField(min_value=1, max_value=36, required=False)
    pricing_model = serializers.ChoiceField(choices=PricingModel.values, required=False)
    usage_type = serializers.ChoiceField(choices=UsageType.values, required=False)
    metric = serializers.SlugRelatedField(
        slug_field="code",
        queryset=BillableMetric.objects.all(),
        required=False,
        allow_null=True,
        help_text="A metered price: the code of the billable metric it bills (none: the sum of its usage).",
    )
    package_size = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    trial_days = serializers.IntegerField(min_value=0, max_value=730, required=False)
    tax_behavior = serializers.ChoiceField(choices=TaxBehavior.values, required=False)
    tiers = PriceTierIn(many=True, required=False)


class PriceUpdateIn(serializers.Serializer):
    nickname = serializers.CharField(max_length=100, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False, help_text="false archives the price (no new subscriptions).")


class PriceApiForm(PriceForm):
    class Meta:
        model = Price
        fields = (
            "product", "nickname", "unit_amount", "interval", "interval_count", "pricing_model", "usage_type",
            "metric", "package_size", "trial_days", "tax_behavior",
        )  # fmt: skip


class CouponIn(serializers.Serializer):
    code = serializers.CharField(max_length=50)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    percent_off = AmountIn(min_value=0, required=False, allow_null=True)
    amount_off = AmountIn(min_value=0, required=False, allow_null=True)
    currency = CurrencyIn(required=False, help_text="The currency of amount_off.")
    duration = serializers.ChoiceField(choices=CouponDuration.values, required=False)
    duration_in_periods = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    max_redemptions = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    redeem_by = serializers.DateField(required=False, allow_null=True)
    products = serializers.ListField(child=RowIn(Product.objects.all()), required=False)


class CouponForm(forms.ModelForm):
    class Meta:
        model = Coupon
        fields = (
            "code", "name", "percent_off", "amount_off", "duration", "duration_in_periods", "max_redemptions",
            "redeem_by", "products",
        )  # fmt: skip


class ProductViewSet(ApiViewSet):
    queryset = Product.objects.all()

    @extend_schema(responses=ProductOut(many=True))
    def list(self, request: Request) -> Response:
        queryset = Product.objects.all()
        if (active := self.query_choice("active", ["true", "false"])) is not None:
            queryset = queryset.filter(active=active == "true")
        return self.list_response(queryset)

    @extend_schema(responses=ProductOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self.object_or_404(Product.objects.all(), pk, what="product"))

    @extend_schema(request=ProductIn, responses={201: ProductOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        given = self.typed(ProductIn)
        with transaction.atomic():
            product = save_model_form(ProductForm, {"active": True, **given})
        return self.represented(product, status=201)

    @extend_schema(request=ProductIn(partial=True), responses=ProductOut)
    def partial_update(self, request: Request, pk: str) -> Response:
        product = self.object_or_404(Product.objects.all(), pk, what="product")
        given = self.typed(ProductIn, partial=True)
        current = {name: getattr(product, name) for name in ProductForm.Meta.fields}
        with transaction.atomic():
            product = save_model_form(ProductForm, {**current, **given}, instance=product)
        return self.represented(product)


class PriceViewSet(ApiViewSet):
    queryset = Price.objects.all()

    @extend_schema(responses=PriceOut(many=True))
    def list(self, request: Request) -> Response:
        queryset = Price.objects.all()
        if (product := self.query_id("product")) is not None:
            queryset = queryset.filter(product_id=product)
        if (active := self.query_choice("active", ["true", "false"])) is not None:
            queryset = queryset.filter(active=active == "true")
        if (currency := self.query_param("currency")) is not None:
            queryset = queryset.filter(unit_amount_currency=currency.upper())
        return self.list_response(queryset)

    @extend_schema(responses=PriceOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self.object_or_404(Price.objects.all(), pk, what="price"))

    @extend_schema(request=PriceIn, responses={201: PriceOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        given = self.typed(PriceIn)
        tiers = given.pop("tiers", [])
        blank = Price()  # the model's defaults, as the admin's add form shows them
        defaults = {name: getattr(blank, name) for name in PriceApiForm.Meta.fields if name not in ("product",)}
        data: dict[str, Any] = {**defaults, **given, "product": given["product"].pk}
        data.pop("unit_amount"), data.pop("currency")
        data["unit_amount_0"], data["unit_amount_1"] = given["unit_amount"], given["currency"]
        model = data["pricing_model"]
        if tiers and model not in (PricingModel.GRADUATED, PricingModel.VOLUME):
            raise ApiProblem(
                400, "tiers: only graduated and volume prices have tiers.", code="invalid_input", field="tiers"
            )
        if model in (PricingModel.GRADUATED, PricingModel.VOLUME) and not tiers:
            raise ApiProblem(400, f"tiers: a {model} price needs its tiers.", code="invalid_input", field="tiers")
        if tiers and tiers[-1]["up_to"] is not None:
            raise ApiProblem(
                400, "tiers: the last tier has up_to null (and above).", code="invalid_input", field="tiers"
            )
        bounds = [tier["up_to"] for tier in tiers[:-1]]
        if None in bounds or bounds != sorted(set(bounds)):
            raise ApiProblem(
                400,
                "tiers: up_to must rise from tier to tier; only the last is null.",
                code="invalid_input",
                field="tiers",
            )
        with transaction.atomic():
            price = save_model_form(PriceApiForm, data)
            PriceTier.objects.bulk_create(
                PriceTier(
                    price=price,
                    up_to=tier["up_to"],
                    unit_amount=tier["unit_amount"],
                    flat_amount=tier.get("flat_amount") or 0,
                )
                for tier in tiers
            )
        return self.represented(Price.objects.get(pk=price.pk), status=201)

    @extend_schema(request=PriceUpdateIn, responses=PriceOut)
    def partial_update(self, request: Request, pk: str) -> Response:
        """Only the nickname and archiving: a price is never re-priced (create a new one and switch to it)."""
        price = self.object_or_404(Price.objects.all(), pk, what="price")
        given = self.typed(PriceUpdateIn, partial=True)
        with transaction.atomic():
            if given.get("active") is False:
                price = price_archive(price=price)
            elif given.get("active") is True and not price.active:
                Price.objects.filter(pk=price.pk).update(active=True)
            if "nickname" in given:
                Price.objects.filter(pk=price.pk).update(nickname=given["nickname"])
        return self.represented(Price.objects.get(pk=price.pk))

    @extend_schema(request=None, responses=PriceOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        """No new subscriptions on it; existing ones keep it (``price_archive``)."""
        price = self.object_or_404(Price.objects.all(), pk, what="price")
        return self.represented(price_archive(price=price))


class CouponViewSet(ApiViewSet):
    queryset = Coupon.objects.all()

    @extend_schema(responses=CouponOut(many=True))
    def list(self, request: Request) -> Response:
        queryset = Coupon.objects.all()
        if (code := self.query_param("code")) is not None:
            queryset = queryset.filter(code=code)
        return self.list_response(queryset)

    @extend_schema(responses=CouponOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self.object_or_404(Coupon.objects.all(), pk, what="coupon"))

    @extend_schema(request=CouponIn, responses={201: CouponOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        given = self.typed(CouponIn)
        percent_off, amount_off = given.get("percent_off"), given.get("amount_off")
        if (percent_off is None) == (amount_off is None):
            raise ApiProblem(
                400,
                "percent_off: give percent_off or amount_off (with currency), one of them.",
                code="invalid_input",
                field="percent_off",
            )
        if amount_off is not None and not given.get("currency"):
            raise ApiProblem(400, "currency: amount_off needs its currency.", code="invalid_input", field="currency")
        data: dict[str, Any] = {
            "duration": CouponDuration.ONCE,
            **{key: value for key, value in given.items() if key not in ("amount_off", "currency", "products")},
            "products": [product.pk for product in given.get("products", [])],
        }
        if amount_off is not None:
            data["amount_off_0"], data["amount_off_1"] = amount_off, given["currency"]
        with transaction.atomic():
            coupon = save_model_form(CouponForm, data)
        return self.represented(coupon, status=201)
