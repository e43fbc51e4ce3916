#!/bin/sh
# Install Debian's Chromium for the browser tests (tests/test_browser.py), and a CJK font so that
# the Chinese pages' screenshots show Chinese text, not boxes; skipped when both are there.
# Playwright's own browser download does not work here; the tests drive /usr/bin/chromium.
set -eu
have_cjk_font() {
    command -v fc-list >/dev/null 2>&1 && fc-list :lang=zh family | grep -q .
}
if [ -x /usr/bin/chromium ] && have_cjk_font; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium fonts-noto-cjk
/usr/bin/chromium --version
