"""Screenshots of the admin's main screens at a laptop's sizes, and a check that nothing overflows.

Run against a running admin (``make demo`` serves one on http://127.0.0.1:8000):

    .venv/bin/python scripts/admin_screenshots.py --base http://127.0.0.1:8000 --out docs/screenshots

Signs in as the demo's ``admin``/``admin``, opens the invoice list, an invoice, a credit note, the customer,
subscription, payment and usage lists, a customer's and a subscription's page and the periodic jobs page at
1440×900 and 1280×800 (a 13" laptop), writes a full-page PNG of each at 1440×900 into ``--out`` (``admin-*.png``;
``--all-sizes`` also keeps the 1280×800 ones) and prints, per page and size, what is wider than the window or than
its box: the page itself (a horizontal scrollbar), table cells cut off by their column, inline tables wider than
their box without a scrollbar of their own, list rows that wrap. Exit status 1 when anything overflows. Uses
Debian's Chromium (docs/GOTCHAS.md §9).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
SIZES = ((1440, 900), (1280, 800))

# name → path (a "{first:<changelist>}" part is replaced by the first row's change URL of that changelist)
PAGES = {
    "invoice-list": "/admin/invoicing/invoice/",
    "invoice-page": "{first:/admin/invoicing/invoice/?status__exact=open}",
    "credit-note-list": "/admin/invoicing/creditnote/",
    "customer-list": "/admin/customers/customer/",
    "customer-page": "{first:/admin/customers/customer/?q=DEMO-0001}",
    "subscription-list": "/admin/subscriptions/subscription/",
    "subscription-page": "{first:/admin/subscriptions/subscription/?status__exact=active}",
    "payment-list": "/admin/payments/payment/",
    "usage-list": "/admin/subscriptions/usagerecord/",
    "jobs": "/admin/billing_project/schedule/",
}

# What overflows: the page, cells whose content is cut (overflow hidden, content wider), inline groups wider than
# their box that do not scroll.
OVERFLOW_JS = """() => {
  const problems = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > window.innerWidth + 1) problems.push(`page ${doc.scrollWidth}px wide`);
  const main = document.querySelector('#content');
  if (main && main.scrollWidth > main.clientWidth + 1) {
    problems.push(`#content ${main.scrollWidth}px in ${main.clientWidth}px`);
  }
  for (const el of document.querySelectorAll('#result_list, .inline-group table, .results, .module table')) {
    let box = el.parentElement;
    while (box && getComputedStyle(box).overflowX === 'visible' && box !== document.body) box = box.parentElement;
    const r = el.getBoundingClientRect();
    const scrolls = box && ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
    if (!scrolls && r.right > window.innerWidth + 1) {
      problems.push(`${el.id || el.className || el.tagName} ends at ${Math.round(r.right)}px`);
    }
  }
  const results = document.querySelector('#changelist .results');
  if (results && results.scrollWidth > results.clientWidth + 1) {
    problems.push(`list ${results.scrollWidth}px wide in ${results.clientWidth}px (columns cut off)`);
  }
  const rows = [...document.querySelectorAll('#result_list tbody tr')];
  const tall = rows.filter(tr => tr.getBoundingClientRect().height > 44);
  if (tall.length) problems.push(`${tall.length} list rows wrap`);
  for (const th of document.querySelectorAll('#result_list thead th')) {
    if (th.scrollWidth > th.clientWidth + 1) problems.push(`header "${th.innerText.trim()}" cut`);
  }
  return problems;
}"""


def _first_change_url(page: Page, base: str, changelist: str) -> str:
    page.goto(base + changelist)
    link = page.locator("#result_list tbody tr th a, #result_list tbody tr td a").first
    href = link.get_attribute("href", timeout=5000) or ""
    return href if href.startswith("http") else base + href


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--out", default="docs/screenshots")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--only", nargs="*", help="page names (default: all)")
    parser.add_argument("--all-sizes", action="store_true", help="keep the 1280×800 screenshots too")
    options = parser.parse_args()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        for width, height in SIZES:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            page.goto(options.base + "/admin/login/")
            page.fill("input[name=username]", options.user)
            page.fill("input[name=password]", options.password)
            page.click("input[type=submit]")
            for name, path in PAGES.items():
                if options.only and name not in options.only:
                    continue
                match = re.fullmatch(r"\{first:(.*)\}", path)
                url = _first_change_url(page, options.base, match.group(1)) if match else options.base + path
                page.goto(url)
                problems = page.evaluate(OVERFLOW_JS)
                status = "ok" if not problems else "OVERFLOW " + "; ".join(problems)
                failed = failed or bool(problems)
                print(f"{width}x{height} {name:18} {status}")
                if width == 1440 or options.all_sizes:
                    suffix = "" if width == 1440 else f"-{width}"
                    page.screenshot(path=str(out / f"admin-{name}{suffix}.png"), full_page=True)
            context.close()
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
