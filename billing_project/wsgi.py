import os

from django.core.wsgi import get_wsgi_application

from billing_project.deployment import refuse_base_settings_without_debug

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_project.settings")
# A deployment that forgot DJANGO_SETTINGS_MODULE must not serve the development profile (public key, sandbox).
refuse_base_settings_without_debug()

application = get_wsgi_application()
