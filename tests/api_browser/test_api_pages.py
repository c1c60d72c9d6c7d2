"""The reference page renders the schema with the vendored Redoc under the site's Content-Security-Policy (no
CDN, no inline script), and a billing admin creates a key and sees it once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from api.models import ApiKey
from billing_project.staff_groups import BILLING_ADMIN, sync_staff_group_permissions
from tests.factories import StaffUserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _shots(tmp_path: Path) -> Path:
    """API_SCREENSHOTS=docs/screenshots refreshes the documentation's pictures; by default they stay in tmp."""
    return Path(os.environ.get("API_SCREENSHOTS") or tmp_path)


def test_reference_page_renders_the_schema(live_server, page, tmp_path):
    problems: list[str] = []
    elsewhere: list[str] = []
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on(
        "response", lambda response: response.status >= 400 and problems.append(f"{response.status} {response.url}")
    )
    page.on(
        "requestfinished",
        lambda request: not request.url.startswith((live_server.url, "data:")) and elsewhere.append(request.url),
    )
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/api/v1/docs/")
    page.get_by_text("Cadence Billing API").first.wait_for(timeout=30_000)
    # Redoc renders the sections near the viewport only: open the subscriptions tag from the sidebar
    page.get_by_text("subscriptions", exact=True).first.click()
    page.get_by_text("/api/v1/subscriptions/{id}/change").filter(visible=True).first.wait_for(timeout=30_000)
    page.screenshot(path=str(_shots(tmp_path) / "api-docs.png"))
    # Redoc's own "Redocly" logo is an <img> from their CDN: refused by the page's img-src (it hides itself), so
    # nothing is fetched from elsewhere; that refusal is the one console error allowed.
    assert elsewhere == []
    assert [text for text in problems if "cdn.redoc.ly" not in text] == [], problems


def test_billing_admin_creates_a_key_in_the_browser(live_server, page, tmp_path):
    # a transactional test before this one flushed the groups the migrations made: make them again
    Group.objects.get_or_create(name=BILLING_ADMIN)
    sync_staff_group_permissions()
    staff = StaffUserFactory(group=BILLING_ADMIN, username="bea")
    staff = User.objects.get(pk=staff.pk)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "bea")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.goto(f"{live_server.url}/admin/api/apikey/add/")
    page.fill("#id_name", "CRM sync")
    page.select_option("#id_scope", "write")
    page.click("input[name=_save]")
    key = page.get_by_test_id("api-key").inner_text()
    page.screenshot(path=str(_shots(tmp_path) / "api-key-created.png"))
    row = ApiKey.objects.get()
    assert key.startswith(f"ck_{row.prefix}_") and row.created_by == staff
    page.goto(f"{live_server.url}/admin/api/apikey/")
    page.screenshot(path=str(_shots(tmp_path) / "api-keys.png"))
    assert key not in page.content() and f"ck_{row.prefix}_" in page.content()
