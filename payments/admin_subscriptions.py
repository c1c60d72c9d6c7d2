"""Payments' part of the subscription page: "Cancel now" with the unused time credited, refunded or not
(payments may refund, so the screen lives here; it extends the subscription admin invoicing registered)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import path, reverse
from django.utils.html import format_html

from core.admin_errors import form_application_error
from core.dates import billing_today
from core.errors import ApplicationError
from core.money import round_amount
from payments.cancellation import Settlement, subscription_cancel_now, subscription_cancel_now_preview
from subscriptions.models import Subscription, SubscriptionStatus

SETTLEMENT_LABELS = {
    Settlement.CREDIT: "Prorated credit: a credit note for the unused time (customer credit, or less due if unpaid)",
    Settlement.REFUND: "Refund to card: the same credit note, paid back to the payment of the invoice",
    Settlement.NONE: "Nothing: no credit for the unused time",
}


class CancelNowForm(forms.Form):
    as_of = forms.DateField(label="Cancel on", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    settlement = forms.ChoiceField(label="Unused time", widget=forms.RadioSelect)
    reason = forms.CharField(required=False, max_length=200, label="Reason")

    def __init__(self, *args: Any, can_refund: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["settlement"].choices = [  # type: ignore[attr-defined]
            (value.value, label)
            for value, label in SETTLEMENT_LABELS.items()
            if value != Settlement.REFUND or can_refund
        ]


def _money(amount: Any, currency: str) -> str:
    return f"{round_amount(amount, currency):,} {currency}"


def _extend_subscription_admin() -> None:
    base = type(admin.site._registry[Subscription])

    class SubscriptionAdmin(base):  # type: ignore[valid-type, misc]
        def get_urls(self) -> list[Any]:
            return [
                path(
                    "<int:object_id>/cancel-now/",
                    self.admin_site.admin_view(self.cancel_now_view),
                    name="subscriptions_subscription_cancel_now",
                ),
                *super().get_urls(),
            ]

        @admin.action(description="Cancel now (prorated credit)", permissions=["change"])
        def cancel_now(self, request: HttpRequest, queryset: QuerySet[Subscription]) -> None:
            """The list's bulk "Cancel now" settles like the page's: a credit note for the unused time."""
            done, failed = 0, []
            for subscription in queryset.order_by("pk"):
                try:
                    subscription_cancel_now(
                        subscription=subscription,
                        as_of=billing_today(),
                        settlement=Settlement.CREDIT,
                        actor=request.user,
                    )
                    self.log_change(request, subscription, "Canceled now (credit).")
                    done += 1
                except ApplicationError as exc:
                    failed.append(f"#{subscription.pk}: {exc}")
            self.message_user(request, f"Canceled: {done} subscription(s).", messages.SUCCESS)
            if failed:
                self.message_user(request, "Not done — " + "; ".join(failed[:10]), messages.WARNING)

        def tools_for(self, request: HttpRequest, subscription: Subscription) -> list[tuple[str, str]]:
            tools = list(super().tools_for(request, subscription))
            if tools and subscription.status in (
                SubscriptionStatus.TRIALING,
                SubscriptionStatus.ACTIVE,
                SubscriptionStatus.PAST_DUE,
                SubscriptionStatus.PAUSED,
            ):
                url = reverse("admin:subscriptions_subscription_cancel_now", args=[subscription.pk])
                tools.append((url, "Cancel now"))
            return tools

        def cancel_now_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
            subscription = self._operable(request, object_id)
            can_refund = request.user.has_perm("payments.refund_payment")
            form = CancelNowForm(
                request.POST or None,
                can_refund=can_refund,
                initial={"as_of": billing_today(), "settlement": Settlement.CREDIT.value},
            )
            as_of = billing_today()
            if request.method == "POST" and form.is_valid():
                as_of = form.cleaned_data["as_of"]
                if "_apply" in request.POST:
                    try:
                        outcome = subscription_cancel_now(
                            subscription=subscription,
                            as_of=as_of,
                            settlement=form.cleaned_data["settlement"],
                            actor=request.user,
                            reason=form.cleaned_data["reason"],
                        )
                    except ApplicationError as exc:
                        form_application_error(form, exc)
                    else:
                        self.log_change(request, subscription, f"Canceled now ({form.cleaned_data['settlement']}).")
                        note = outcome.credit_note
                        if note is not None:
                            self.message_user(
                                request,
                                format_html(
                                    'Canceled on {}. Credit note <a href="{}">{}</a> of {} issued{}.',
                                    as_of,
                                    reverse("admin:invoicing_creditnote_change", args=[note.pk]),
                                    note.number,
                                    _money(note.total, note.currency),
                                    f"; {len(outcome.refunds)} refund(s) sent" if outcome.refunds else "",
                                ),
                                messages.SUCCESS,
                            )
                        else:
                            self.message_user(request, f"Canceled on {as_of}. {outcome.note}".strip(), messages.SUCCESS)
                        return self._back(subscription)
            preview = subscription_cancel_now_preview(subscription=subscription, as_of=as_of)
            lines = [
                "Cancels the subscription on the date given: nothing more is billed; usage so far is billed by a "
                "final invoice that day.",
            ]
            if preview.credit > 0 and preview.invoice is not None:
                lines.append(
                    f"Unused time: {preview.remaining_days} of {preview.period_days} days of invoice "
                    f"{preview.invoice.number} — prorated credit {_money(preview.credit, preview.currency)} "
                    f"(tax included); refundable to its payments: {_money(preview.refundable, preview.currency)}."
                )
            else:
                lines.append(preview.note or "Nothing to credit.")
            return self._page(
                request,
                subscription,
                title=f"Cancel subscription #{subscription.pk} now",
                form=form,
                buttons=[("_preview", "Preview"), ("_apply", "Cancel now")],
                intro=lines,
            )

    admin.site.unregister(Subscription)
    admin.site.register(Subscription, SubscriptionAdmin)


_extend_subscription_admin()
