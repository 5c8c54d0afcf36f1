#!/usr/bin/env bash
# Debian's headless Chromium and its WebDriver for tests/test_dashboard_browser.py. Installed only
# when missing; needs root (CI runs as root). Without it the browser test skips locally and
# fails under CI=true, so a green CI always means the dashboard ran in a real browser.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "chromium / chromium-driver missing: run as root: apt-get install -y chromium chromium-driver" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium chromium-driver
