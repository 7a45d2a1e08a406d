#!/usr/bin/env bash
# The review console's browser tests drive Debian's chromium through Playwright
# (executable_path=/usr/bin/chromium); never a browser download. Install it when missing
# (as root), otherwise stop with a message that names the package.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "browser: /usr/bin/chromium is installed"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "make test needs /usr/bin/chromium for the console's browser tests; install it (Debian: apt-get install chromium)." >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
echo "browser: installed chromium at /usr/bin/chromium"
