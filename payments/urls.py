from django.urls import path

from payments.views import payments_webhook

app_name = "payments"

urlpatterns = [
    path("<slug:gateway>/", payments_webhook, name="webhook"),
]
