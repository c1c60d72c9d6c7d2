#!/usr/bin/env bash
# The Debian packages the test suite needs, in one list that `make test` and `.ci/run` both use.
#   chromium          the portal's and admin's browser tests (Debian's build via Playwright; never `playwright install`)
#   poppler-utils     pdftoppm / pdftotext, to read back and look at the invoice PDFs
#   fonts-dejavu-core the TTF fonts the PDFs embed (a copy lives in static/fonts; the package is for pdftoppm).
#                     The CJK and Korean faces (Droid Sans Fallback, NanumSquare) are vendored in static/fonts
#                     with their licences, so neither the tests nor `make demo` need fonts-droid-fallback or fonts-nanum.
#   wrk               the load test: the portal and admin under wrk while billing runs
# Installs what is missing with apt-get when run as root or with passwordless sudo; otherwise stops with one
# line naming the exact command to run.
set -euo pipefail

PACKAGES=(chromium poppler-utils fonts-dejavu-core wrk)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0

if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "Missing Debian packages for the tests; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "Installing Debian packages the tests need: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
