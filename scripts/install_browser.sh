#!/usr/bin/env bash
# Install Debian's Chromium and ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver) for the studio's browser
# tests (tests/test_studio_browser.py, marked `browser`). No browser is ever downloaded from elsewhere. Skipped,
# with a message, where apt-get is missing or we are not root: those tests are then skipped with that reason.
set -u
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: apt-get not found; the studio's browser tests will be skipped (need chromium chromium-driver)" >&2
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install_browser: not root; run 'sudo apt-get install -y chromium chromium-driver' for the browser tests" >&2
  exit 0
fi
echo "install_browser: apt-get install chromium chromium-driver"
(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
  || echo "install_browser: apt-get failed; the studio's browser tests will be skipped" >&2
exit 0
