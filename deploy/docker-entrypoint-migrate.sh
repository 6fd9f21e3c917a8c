#!/bin/sh
# One-shot: the customer's schema (only if absent, never altered), then the app's own migrations.
set -e
python manage.py bootstrap_db
python manage.py migrate --no-input
python manage.py createcachetable
