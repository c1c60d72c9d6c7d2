"""Subscriptions: create, change items (price, quantity) with a proration behaviour, preview a change, cancel
(now or at period end), pause, resume, and the upcoming invoice. Each calls the service the admin's subscription
page calls: ``subscription_create``, ``subscription_change_invoice`` / ``subscription_change_preview_full``
(invoicing), ``subscription_cancel`` and ``subscription_cancel_now`` (payments: the unused time as credit or a
refund), ``subscription_pause`` / ``subscription_resume``, ``subscription_upcoming_invoice``."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from api.fields import AmountIn, RowIn
from api.problems import ApiProblem
from api.serializers import (
    InvoiceOut,
    SubscriptionOut,
    amount_text,
    represent,
    represent_charge_line,
    represent_invoice_preview,
)
from api.views.base import IDEMPOTENCY_PARAMETER, ApiViewSet
from core.dates import billing_today
from customers.models import Customer
from invoicing.models import Invoice
from invoicing.subscription_billing import (
    subscription_change_invoice,
    subscription_change_preview_full,
    subscription_upcoming_invoice,
)
from payments.cancellation import Settlement, subscription_cancel_now
from subscriptions.models import CollectionMethod, Coupon, Price, Subscription, SubscriptionStatus
from subscriptions.services import (
    MAX_ITEM_QUANTITY,
    ItemSpec,
    ProrationBehavior,
    subscription_cancel,
    subscription_cancel_undo,
    subscription_commitments_update,
    subscription_create,
    subscription_pause,
    subscription_resume,
)


class ItemIn(serializers.Serializer):
    price = RowIn(Price.objects.select_related("product"))
    quantity = serializers.IntegerField(min_value=1, max_value=MAX_ITEM_QUANTITY, required=False, default=1)


class SubscriptionIn(serializers.Serializer):
    customer = RowIn(Customer.objects.all())
    items = ItemIn(many=True, allow_empty=False)
    start_date = serializers.DateField(required=False, help_text="Default: today (BILLING_TIMEZONE).")
    trial_days = serializers.IntegerField(min_value=0, max_value=730, required=False, allow_null=True)
    trial_end = serializers.DateField(required=False, allow_null=True)
    billing_cycle_anchor = serializers.DateField(required=False, allow_null=True)
    collection_method = serializers.ChoiceField(choices=CollectionMethod.values, required=False)
    days_until_due = serializers.IntegerField(min_value=0, max_value=365, required=False, allow_null=True)
    metadata = serializers.DictField(required=False)
    coupon = serializers.SlugRelatedField(
        slug_field="code", queryset=Coupon.objects.all(), required=False, allow_null=True, help_text="A coupon code."
    )
    minimum_commitment = AmountIn(
        required=False,
        allow_null=True,
        positive=True,
        help_text="Minimum spend per billing period in the subscription's currency; a shortfall is billed as a "
        "true-up line with the period's usage (docs/decisions/commitments.md). Null: none.",
    )
    usage_thresholds = serializers.ListField(
        child=AmountIn(positive=True),
        required=False,
        max_length=20,
        help_text="Progressive billing: amounts of the period's usage; crossing one invoices the usage so far at "
        "once, and the period's invoice deducts it.",
    )


class CommitmentsIn(serializers.Serializer):
    minimum_commitment = AmountIn(required=False, allow_null=True, positive=True)
    usage_thresholds = serializers.ListField(child=AmountIn(positive=True), required=False, max_length=20)


class ChangeIn(serializers.Serializer):
    items = ItemIn(many=True, allow_empty=False, help_text="The subscription's items after the change (all of them).")
    proration_behavior = serializers.ChoiceField(
        choices=[behavior.value for behavior in ProrationBehavior],
        required=False,
        help_text="create_prorations (on the next invoice, default), always_invoice (invoiced now), none.",
    )
    as_of = serializers.DateField(required=False, help_text="The change date; default today.")
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


class CancelIn(serializers.Serializer):
    at_period_end = serializers.BooleanField(required=False, default=False)
    settlement = serializers.ChoiceField(
        choices=[settlement.value for settlement in Settlement],
        required=False,
        help_text="Cancel now only: the unused time as customer credit (credit note), refunded, or none.",
    )
    as_of = serializers.DateField(required=False)
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


class StateChangeIn(serializers.Serializer):
    as_of = serializers.DateField(required=False)
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True)


ChangeOut = inline_serializer(
    "SubscriptionChange",
    {
        "object": serializers.CharField(),
        "subscription": SubscriptionOut(),
        "proration_lines": serializers.ListField(child=serializers.DictField()),
        "invoice": InvoiceOut(allow_null=True),
        "note": serializers.CharField(),
    },
)
ChangePreviewOut = inline_serializer(
    "SubscriptionChangePreview",
    {
        "object": serializers.CharField(),
        "proration_lines": serializers.ListField(child=serializers.DictField()),
        "proration_total": serializers.CharField(),
        "invoice_now": serializers.DictField(allow_null=True),
        "next_invoice": serializers.DictField(allow_null=True),
        "note": serializers.CharField(),
    },
)


def _items(rows: list[dict[str, Any]]) -> list[ItemSpec]:
    prices = [row["price"].pk for row in rows]
    if len(set(prices)) != len(prices):
        raise ApiProblem(
            400, "items: each price once (give its quantity instead).", code="invalid_input", field="items"
        )
    return [ItemSpec(price=row["price"], quantity=row["quantity"]) for row in rows]


class SubscriptionViewSet(ApiViewSet):
    queryset = Subscription.objects.all()
    # canceling now with a refund calls the gateway (after the service's own commit)
    outside_transaction_actions = frozenset({"cancel"})

    def _subscription(self, pk: str) -> Subscription:
        return self.object_or_404(Subscription.objects.select_related("customer"), pk, what="subscription")

    @extend_schema(responses=SubscriptionOut(many=True))
    def list(self, request: Request) -> Response:
        queryset = Subscription.objects.all()
        if (customer := self.query_id("customer")) is not None:
            queryset = queryset.filter(customer_id=customer)
        if (status := self.query_choice("status", list(SubscriptionStatus.values))) is not None:
            queryset = queryset.filter(status=status)
        return self.list_response(queryset)

    @extend_schema(responses=SubscriptionOut)
    def retrieve(self, request: Request, pk: str) -> Response:
        return self.represented(self._subscription(pk))

    @extend_schema(request=SubscriptionIn, responses={201: SubscriptionOut}, parameters=[IDEMPOTENCY_PARAMETER])
    def create(self, request: Request) -> Response:
        given = self.typed(SubscriptionIn)
        subscription = subscription_create(
            customer=given["customer"],
            items=_items(given["items"]),
            start_date=given.get("start_date") or billing_today(),
            trial_days=given.get("trial_days"),
            trial_end=given.get("trial_end"),
            billing_cycle_anchor=given.get("billing_cycle_anchor"),
            collection_method=given.get("collection_method") or CollectionMethod.SEND_INVOICE,
            days_until_due=given.get("days_until_due"),
            metadata=given.get("metadata"),
            coupon=given.get("coupon"),
        )
        if given.get("minimum_commitment") is not None or given.get("usage_thresholds"):
            subscription_commitments_update(
                subscription=subscription,
                minimum_commitment=given.get("minimum_commitment"),
                usage_thresholds=given.get("usage_thresholds") or [],
            )
        return self.represented(self._subscription(str(subscription.pk)), status=201)

    @extend_schema(request=CommitmentsIn(partial=True), responses=SubscriptionOut)
    def partial_update(self, request: Request, pk: str) -> Response:
        """Set the minimum commitment and the usage thresholds (the other fields change through their actions).
        A field left out keeps its value."""
        subscription = self._subscription(pk)
        given = self.typed(CommitmentsIn, partial=True)
        subscription_commitments_update(
            subscription=subscription,
            minimum_commitment=given.get("minimum_commitment", subscription.minimum_commitment),
            usage_thresholds=given.get("usage_thresholds", subscription.usage_thresholds or []),
        )
        return self.represented(self._subscription(pk))

    @extend_schema(request=ChangeIn, responses=ChangeOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def change(self, request: Request, pk: str) -> Response:
        """Replace the items (switch price, change quantity, add or remove an item) on ``as_of`` with the
        proration behaviour; ``always_invoice`` issues the prorations at once (the invoice is in the answer)."""
        subscription = self._subscription(pk)
        given = self.typed(ChangeIn)
        outcome = subscription_change_invoice(
            subscription=subscription,
            items=_items(given["items"]),
            as_of=given.get("as_of") or billing_today(),
            proration_behavior=ProrationBehavior(given.get("proration_behavior") or "create_prorations"),
            reason=given.get("reason", ""),
        )
        invoice = outcome.invoice
        return Response(
            {
                "object": "subscription_change",
                "subscription": represent(self._subscription(pk)),
                "proration_lines": [represent_charge_line(line) for line in outcome.result.lines],
                "invoice": represent(_invoice(invoice.pk)) if invoice is not None else None,
                "note": outcome.note,
            }
        )

    @extend_schema(request=ChangeIn, responses=ChangePreviewOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"], url_path="change/preview")
    def change_preview(self, request: Request, pk: str) -> Response:
        """What ``change`` with the same body would do — proration lines, the invoice issued now
        (``always_invoice``), the next invoice — computed by the same code in a rolled-back transaction."""
        subscription = self._subscription(pk)
        given = self.typed(ChangeIn)
        preview = subscription_change_preview_full(
            subscription=subscription,
            items=_items(given["items"]),
            as_of=given.get("as_of") or billing_today(),
            proration_behavior=ProrationBehavior(given.get("proration_behavior") or "create_prorations"),
        )
        return Response(
            {
                "object": "subscription_change_preview",
                "proration_lines": [represent_charge_line(line) for line in preview.proration_lines],
                "proration_total": amount_text(preview.proration_total, subscription.currency),
                "invoice_now": represent_invoice_preview(preview.now) if preview.now else None,
                "next_invoice": represent_invoice_preview(preview.next_invoice) if preview.next_invoice else None,
                "note": preview.note,
            }
        )

    @extend_schema(request=CancelIn, responses=SubscriptionOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """``at_period_end: true``: runs to the end of the paid period, then ends (undo with
        ``undo_cancel``). Otherwise canceled on ``as_of``; ``settlement`` says what happens to the unused time
        (credit, refund or none; default credit)."""
        subscription = self._subscription(pk)
        given = self.typed(CancelIn)
        as_of = given.get("as_of") or billing_today()
        if given["at_period_end"]:
            if "settlement" in given:
                raise ApiProblem(400, "settlement: only when canceling now.", code="invalid_input", field="settlement")
            subscription_cancel(
                subscription=subscription, as_of=as_of, at_period_end=True, reason=given.get("reason", "")
            )
        else:
            subscription_cancel_now(
                subscription=subscription,
                as_of=as_of,
                settlement=given.get("settlement") or Settlement.CREDIT,
                reason=given.get("reason", ""),
            )
        return self.represented(self._subscription(pk))

    @extend_schema(request=StateChangeIn, responses=SubscriptionOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"], url_path="undo_cancel")
    def undo_cancel(self, request: Request, pk: str) -> Response:
        given = self.typed(StateChangeIn)
        subscription_cancel_undo(subscription=self._subscription(pk), reason=given.get("reason", ""))
        return self.represented(self._subscription(pk))

    @extend_schema(request=StateChangeIn, responses=SubscriptionOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        given = self.typed(StateChangeIn)
        subscription_pause(
            subscription=self._subscription(pk),
            as_of=given.get("as_of") or billing_today(),
            reason=given.get("reason", ""),
        )
        return self.represented(self._subscription(pk))

    @extend_schema(request=StateChangeIn, responses=SubscriptionOut, parameters=[IDEMPOTENCY_PARAMETER])
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        given = self.typed(StateChangeIn)
        subscription_resume(
            subscription=self._subscription(pk),
            as_of=given.get("as_of") or billing_today(),
            reason=given.get("reason", ""),
        )
        return self.represented(self._subscription(pk))

    @extend_schema(responses={200: inline_serializer("InvoicePreview", {"object": serializers.CharField()})})
    @action(detail=True, methods=["get"], url_path="upcoming_invoice")
    def upcoming_invoice(self, request: Request, pk: str) -> Response:
        """The next invoice as the billing run will issue it; written nowhere, no number. 404 if none."""
        subscription = self._subscription(pk)
        preview = subscription_upcoming_invoice(subscription=subscription, as_of=self.query_date("as_of"))
        if preview is None:
            raise ApiProblem(
                404,
                f"Subscription {subscription.pk} has no upcoming invoice ({subscription.status}).",
                code="not_found",
            )
        return Response(represent_invoice_preview(preview))


def _invoice(pk: int) -> Invoice:
    return Invoice.objects.prefetch_related("lines").get(pk=pk)
