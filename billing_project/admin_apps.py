from django.contrib.admin.apps import AdminConfig


class BillingAdminConfig(AdminConfig):
    """django.contrib.admin with the product's own AdminSite (name, dashboard)."""

    default_site = "billing_project.admin_site.BillingAdminSite"
