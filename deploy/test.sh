#!/usr/bin/env bash
# Set everything up (deploy/setup.sh), then run the whole test suite against the real
# PostgreSQL and RabbitMQ, after the linter. The HTML report is written to reports/tests.html.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/setup.sh
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
mkdir -p reports
exec .venv/bin/pytest --html=reports/tests.html --self-contained-html "$@"
