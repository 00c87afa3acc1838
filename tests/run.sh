#!/usr/bin/env bash
# The test command (README, .ci/run): installs what the tests need on a fresh machine, then
# lints and runs the whole suite. Extra arguments go to pytest (e.g. -k locator, -n 0).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's headless Chromium for the web app's browser tests (Playwright drives it), and ffmpeg,
# which serves a real network stream on loopback for the reconnect test.
missing=""
command -v chromium >/dev/null || missing="$missing chromium"
command -v ffmpeg >/dev/null || missing="$missing ffmpeg"
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "tests/run.sh: missing$missing; install (sudo apt-get install$missing) for the browser and stream tests" >&2
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
# Two workers (pytest-xdist): most of the suite's time is single-threaded TFLite conversion and
# browser waits, so on 2 cores it takes about half as long (BENCHMARKS.md, "The test suite in two processes").
# Pass -n 0 to run in one process.
python -m pytest -q -n 2 "$@"
