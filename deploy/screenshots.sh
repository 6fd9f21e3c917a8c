#!/usr/bin/env bash
# Refresh the console screenshots shown in the README (docs/screenshots/) by running the
# browser tests with their screenshot folder pointed there. Needs what deploy/test.sh
# needs (run that once first). Ordinary test runs write screenshots to
# reports/screenshots/ and change no tracked file.
set -euo pipefail
cd "$(dirname "$0")/.."

mkdir -p docs/screenshots
SCREENSHOTS_DIR="$PWD/docs/screenshots" exec .venv/bin/pytest tests/browser -q "$@"
