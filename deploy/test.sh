#!/usr/bin/env bash
# Set everything up (deploy/setup.sh), then run the whole test suite against the real
# PostgreSQL and RabbitMQ, with Debian's Chromium (installed if missing) and the locked Caddy,
# after the linter.
# The HTML report is written to reports/tests.html; console screenshots to reports/screenshots/.
# Running it changes no tracked file: deploy/screenshots.sh refreshes the README's screenshots.
set -euo pipefail
cd "$(dirname "$0")/.."

# MQTT_ENABLED=false: setup leaves the machine's broker alone. The MQTT tests start brokers
# of their own (tests/mqtt/node.py) and configure one with deploy/rabbitmq_mqtt.sh; the
# suite must not restart the broker every other test run uses, nor need root for it.
MQTT_ENABLED=false NEED_TEST_TOOLS=1 deploy/setup.sh
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
mkdir -p reports
exec .venv/bin/pytest --html=reports/tests.html --self-contained-html "$@"
