#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a fresh machine, then
# lints and runs the whole suite. Extra arguments go to pytest (e.g. -k locator, -m "not slow").
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless Chromium (Debian's) for the web app's browser tests; Playwright drives it.
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "tests/run.sh: chromium is missing; install it (sudo apt-get install chromium) for the browser tests" >&2
        exit 1
    fi
fi

# A virtual environment of the project's own, with the test extras (pytest, ruff, playwright...).
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e '.[test]'

ruff check .
python -m pytest -q "$@"
