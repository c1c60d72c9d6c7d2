from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.generic import RedirectView


def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    # [portal urls]
    path("portal/", include("billing_project.portal")),
    # [dunning urls]
    # [delivery urls]
    # E-mail provider tracking webhooks (basic auth: ANYMAIL["WEBHOOK_SECRET"]), e.g. /anymail/postmark/tracking/.
    path("anymail/", include("anymail.urls")),
    # [payments urls]
    # Gateway webhooks, /webhooks/<gateway>/.
    path("webhooks/", include("payments.urls")),
    # The public REST API (docs/API.md): API keys, problem JSON errors, the OpenAPI schema at /api/v1/schema/.
    path("api/v1/", include("api.urls")),
]
