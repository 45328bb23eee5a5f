#!/usr/bin/env bash
# Run the test suite (after `scripts/setup.sh dev`). Installs Debian's chromium + chromedriver for the
# labeling app's browser test when missing and we may (root or passwordless sudo); the browser test
# skips with a reason otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  if $SUDO true 2>/dev/null && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian chromium + chromium-driver for the browser test"
    $SUDO apt-get update -qq >/dev/null && \
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null || \
      echo "warning: could not install chromium; the browser test will be skipped"
  fi
fi
export RLHFKIT_NO_PROGRESS=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest "$@"
