from django.conf import settings
from django.contrib import admin


class BillingAdminSite(admin.AdminSite):
    site_header = settings.PRODUCT_NAME
    site_title = settings.PRODUCT_NAME
    index_title = "Back-office"
