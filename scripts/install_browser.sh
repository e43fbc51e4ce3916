#!/bin/sh
# Install Debian's Chromium for the browser tests (tests/test_browser.py), if it is missing.
# Playwright's own browser download does not work here; the tests drive /usr/bin/chromium.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y chromium
/usr/bin/chromium --version
