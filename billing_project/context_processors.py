from django.conf import settings
from django.http import HttpRequest


def product(request: HttpRequest) -> dict[str, str]:
    return {"PRODUCT_NAME": settings.PRODUCT_NAME}
