"""Settings shared by every environment; values come from the environment (see ``env.py``)."""

import ipaddress
from datetime import timedelta

from config.observability import logging_config, metrics_directory_prepare

from .env import BASE_DIR, env
from .rabbitmq import *  # noqa: F403 - integration settings live in their own module

# Required in production (prod.py); dev and test settings fall back to a throwaway key.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# Former keys while rotating: what they signed (sessions, message ids) still verifies.
SECRET_KEY_FALLBACKS = env.list("DJANGO_SECRET_KEY_FALLBACKS", default=[])
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "axes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_apscheduler",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "ingest",
    "scheduler",
    "dashboard",
]

MIDDLEWARE = [
    "config.observability.RequestIdMiddleware",
    "config.security_headers.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Console reads from the read replica when there is one (config/replica.py).
    "config.replica.ReplicaReadMiddleware",
    # Pages render, and filters read, times in the zone the viewer chose (browser or UTC).
    "dashboard.timezones.ViewerTimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "config.sessions.SessionLifetimeMiddleware",
    # Last, as django-axes requires: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]
# Devices and partner systems (key or signature, never a session): see config/handlers.py.
MACHINE_API_PATH_PREFIX = "/api/v1/"
MACHINE_API_MIDDLEWARE = [
    "config.observability.RequestIdMiddleware",
    "config.security_headers.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

# Only this origin's scripts, styles and connections; no framing, no plugins, forms post here only.
_CSP_COMMON = (
    "default-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
CONTENT_SECURITY_POLICY = f"{_CSP_COMMON}; style-src 'self'"
# Swagger UI and Redoc (the API's documentation) inline a few styles and start a worker.
CONTENT_SECURITY_POLICY_DOCS = f"{_CSP_COMMON}; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:"
CONTENT_SECURITY_POLICY_DOCS_PATHS = ["/api/docs/", "/api/redoc/"]
# The console needs none of the browser's sensors or devices.
PERMISSIONS_POLICY = (
    "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    "payment=(), usb=()"
)

ROOT_URLCONF = "config.urls"
# A refused CSRF check gets the console's own 403 page (with the request id), not Django's.
CSRF_FAILURE_VIEW = "dashboard.views.errors.csrf_failure"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.context_processors.console",
                "dashboard.context_processors.health",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://iot_care:iot_care@127.0.0.1:5432/iot_care")
}
# Persistent connections: the worker and gunicorn workers are long-lived processes.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A streaming standby of the primary for the console's reading pages (config/replica.py);
# empty: no replica, everything reads the primary.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
# After a browser's unsafe request (an action, a login), its pages read the primary this long.
DATABASE_REPLICA_PIN_SECONDS = env.float("DATABASE_REPLICA_PIN_SECONDS", default=5)
# Pages read the primary (and a banner says so) while the replica is further behind than this.
DATABASE_REPLICA_MAX_LAG_SECONDS = env.float("DATABASE_REPLICA_MAX_LAG_SECONDS", default=30)
# The replica's state is read at most this often per process, with this connect timeout
# (libpq counts whole seconds, at least 2): a dead replica costs pages little.
DATABASE_REPLICA_CHECK_SECONDS = env.float("DATABASE_REPLICA_CHECK_SECONDS", default=2)
DATABASE_REPLICA_CONNECT_TIMEOUT_SECONDS = env.int("DATABASE_REPLICA_CONNECT_TIMEOUT_SECONDS", default=2)


def replica_database(url: str) -> dict:
    replica = env.db_url_config(url)
    replica["CONN_MAX_AGE"] = DATABASES["default"]["CONN_MAX_AGE"]
    replica["CONN_HEALTH_CHECKS"] = True
    replica.setdefault("OPTIONS", {})["connect_timeout"] = DATABASE_REPLICA_CONNECT_TIMEOUT_SECONDS
    # Should a test run ever have one: no test database of its own, it is the primary's.
    replica["TEST"] = {"MIRROR": "default"}
    return replica


if DATABASE_REPLICA_URL:
    DATABASES["replica"] = replica_database(DATABASE_REPLICA_URL)
DATABASE_ROUTERS = ["config.replica.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

LOGIN_URL = "dashboard:login"
LOGIN_REDIRECT_URL = "dashboard:overview"

# Login throttling (django-axes, see dashboard/lockout.py): failed logins are counted per
# user name and, separately, per client address; past the limit either one is refused
# without a password check until the cool-off has passed. Counts live in the database.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# A successful login clears nothing: axes would clear every failure of that user name OR
# that address, so anyone with an account of their own could reset the count between
# rounds of guesses at someone else's password. Failures expire with the cool-off instead.
AXES_RESET_ON_SUCCESS = False
AXES_CLIENT_IP_CALLABLE = "dashboard.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "dashboard.lockout.lockout_response"
# Peers whose X-Forwarded-For is believed (addresses or networks; "*" for any): the
# reverse proxy. The same variable tells gunicorn whose forwarded headers to trust.
TRUSTED_PROXY_ADDRESSES = env.list("FORWARDED_ALLOW_IPS", default=["127.0.0.1", "::1"])

# Console and admin sessions (config/sessions.py): the cookie ends with the browser, a
# session ends after SESSION_IDLE_TIMEOUT_SECONDS without a page being used, and at the
# latest SESSION_COOKIE_AGE after login.
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_AGE = env.int("SESSION_MAX_AGE_SECONDS", default=8 * 3600)
SESSION_IDLE_TIMEOUT_SECONDS = env.int("SESSION_IDLE_TIMEOUT_SECONDS", default=30 * 60)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_PARSER_CLASSES": ["ingest.parsers.StrictJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "EXCEPTION_HANDLER": "core.exception_handler.application_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# OpenAPI documents at /api/schema/, /api/docs/ (Swagger UI) and /api/redoc/, served with
# their JavaScript from the sidecar package: no CDN.
SPECTACULAR_SETTINGS = {
    "TITLE": "iot_care ingestion API",
    "DESCRIPTION": "Devices and partner systems send readings, events and notifications; every "
    "accepted message is confirmed by the broker before the 202.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Ingest API limits (see the API contract in README.md).
INGEST_MAX_RECORDS = env.int("INGEST_MAX_RECORDS", default=1000)
INGEST_MAX_CLOCK_SKEW_SECONDS = env.int("INGEST_MAX_CLOCK_SKEW", default=300)
INGEST_MAX_AGE_DAYS = env.int("INGEST_MAX_AGE_DAYS", default=30)
INGEST_MAX_BODY_BYTES = env.int("INGEST_MAX_BODY_BYTES", default=1024 * 1024)
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=1024 * 1024)
# Standard Webhooks: a delivery signed further than this from now (either way) is refused.
WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS = env.int("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", default=300)
DATA_UPLOAD_MAX_MEMORY_SIZE = max(INGEST_MAX_BODY_BYTES, WEBHOOK_MAX_BODY_BYTES)

# Per-device request rate (DRF throttle syntax: "<n>/<second|minute|hour|day>"), counted
# over a sliding period in the shared cache (CACHE_URL).
INGEST_DEVICE_RATE = env.str("INGEST_DEVICE_RATE", default="600/minute")
# Verified device keys are kept in each web process and all re-checked in one query at
# most this often: a revoked key or a retired device is refused within this bound (plus
# one query) on every process. 0 turns the cache off. See ingest/device_key_cache.py.
DEVICE_KEY_CACHE_SECONDS = env.float("DEVICE_KEY_CACHE_SECONDS", default=1)
DEVICE_KEY_CACHE_MAX_KEYS = env.int("DEVICE_KEY_CACHE_MAX_KEYS", default=10_000)
CACHE_TIMEOUT_SECONDS = env.float("CACHE_TIMEOUT_SECONDS", default=0.5)

# gRPC streaming ingest (manage.py serve_grpc; ingest/grpc/). Plain HTTP/2 on loopback:
# TLS ends at Caddy, which forwards /iot_care.ingest.v1.IngestStream/* over h2c.
GRPC_BIND = env.str("GRPC_BIND", default="127.0.0.1")
GRPC_PORT = env.int("GRPC_PORT", default=50051)
# One chunk (or answer) at most this large; a chunk holds at most INGEST_MAX_RECORDS records.
GRPC_MAX_MESSAGE_BYTES = env.int("GRPC_MAX_MESSAGE_BYTES", default=4 * 1024 * 1024)
# Concurrent streams per process (each holds a server thread); more are refused (RESOURCE_EXHAUSTED).
GRPC_MAX_STREAMS = env.int("GRPC_MAX_STREAMS", default=32)
# Chunks of one stream published but not yet answered: the confirms of that many are awaited together.
GRPC_STREAM_WINDOW = env.int("GRPC_STREAM_WINDOW", default=32)
# Threads of the process that validate and publish chunks (shared by every stream).
GRPC_PUBLISH_THREADS = env.int("GRPC_PUBLISH_THREADS", default=16)
# Pings on idle connections (through NATs and proxies), and how long an answer may take.
GRPC_KEEPALIVE_SECONDS = env.int("GRPC_KEEPALIVE_SECONDS", default=30)
GRPC_KEEPALIVE_TIMEOUT_SECONDS = env.int("GRPC_KEEPALIVE_TIMEOUT_SECONDS", default=10)
# A stream whose client set no deadline ends after this long (the client resumes on a new one).
GRPC_STREAM_MAX_SECONDS = env.int("GRPC_STREAM_MAX_SECONDS", default=3600)
# On SIGTERM, open streams get this long to finish before they are cancelled.
GRPC_SHUTDOWN_GRACE_SECONDS = env.float("GRPC_SHUTDOWN_GRACE_SECONDS", default=10)

# Worker batching, retries and dead letters.
INGEST_BATCH_SIZE = env.int("INGEST_BATCH_SIZE", default=200)
INGEST_BATCH_MAX_WAIT_SECONDS = env.float("INGEST_BATCH_MAX_WAIT_SECONDS", default=0.2)
INGEST_MAX_ATTEMPTS = env.int("INGEST_MAX_ATTEMPTS", default=5)
# Delay before each retry of a failed message; the last one repeats. One queue per delay.
INGEST_RETRY_DELAYS_SECONDS = env.list(
    "INGEST_RETRY_DELAYS_SECONDS", cast=float, default=[1.0, 5.0, 30.0, 120.0]
)

# The device rate limit counts in this cache, so it must be shared by every web worker
# and host: Redis. A per-process cache (locmem) would allow the rate once per worker;
# production refuses one (prod.py).
CACHES = {"default": env.cache_url("CACHE_URL", default="redis://127.0.0.1:6379/0")}
if CACHES["default"]["BACKEND"].endswith("RedisCache"):
    CACHES["default"]["BACKEND"] = "django.core.cache.backends.redis.RedisCache"
    # A Redis that hangs must not hold a web worker: the rate limit then fails open.
    CACHES["default"].setdefault("OPTIONS", {}).update(
        {"socket_connect_timeout": CACHE_TIMEOUT_SECONDS, "socket_timeout": CACHE_TIMEOUT_SECONDS}
    )

LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# Logs go to the console (stderr), which containers and systemd collect. LOG_DIR adds one
# file shared by every process (relative paths are taken from the project folder).
LOG_DIR = BASE_DIR / env.str("LOG_DIR") if env.str("LOG_DIR", default="") else None
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")  # plain | json
LOGGING = logging_config(level=LOG_LEVEL, log_dir=LOG_DIR, json_format=LOG_FORMAT == "json")
# Shared counters of several processes (gunicorn sets it for its workers).
PROMETHEUS_MULTIPROC_DIR = metrics_directory_prepare(env.str("PROMETHEUS_MULTIPROC_DIR", default=""))

# Probes are reused for this many seconds per process (ingest/probe_cache.py). One broker
# read (queue depths, and whether the broker answers) serves the console's overview,
# /metrics and /readyz; /readyz also reuses its database check.
BROKER_READ_CACHE_SECONDS = env.float("BROKER_READ_CACHE_SECONDS", default=2)
READINESS_CACHE_SECONDS = env.float("READINESS_CACHE_SECONDS", default=2)

# /metrics needs "Authorization: Bearer <token>"; without a token, loopback only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# consume_queue serves its own metrics on this port when set (separate hosts/containers).
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
# Loopback unless told otherwise: the port has no token (the image sets 0.0.0.0, where the
# compose network is the boundary).
WORKER_METRICS_ADDRESS = env.str("WORKER_METRICS_ADDRESS", default="127.0.0.1")

# Console bulk jobs (run_console_jobs): dead letters per transaction, and the rate bound.
# A requeue is bounded by the broker's confirms anyway (about 10,000/s on a small host);
# the rate bound is for an operator who wants a redrive gentler than that.
CONSOLE_BULK_CHUNK_SIZE = env.int("CONSOLE_BULK_CHUNK_SIZE", default=2000)
CONSOLE_BULK_MAX_PER_SECOND = env.float("CONSOLE_BULK_MAX_PER_SECOND", default=20000)
# A bulk plan (what a bulk action would touch, frozen) must be confirmed within this time.
CONSOLE_BULK_PLAN_TTL_SECONDS = env.int("CONSOLE_BULK_PLAN_TTL_SECONDS", default=900)
# A bulk requeue pauses itself when more than this share of the messages it requeued come
# back as dead letters, once it has requeued at least CONSOLE_BULK_PAUSE_MIN_SAMPLE (0: never).
CONSOLE_BULK_PAUSE_FAILURE_RATIO = env.float("CONSOLE_BULK_PAUSE_FAILURE_RATIO", default=0.2)
CONSOLE_BULK_PAUSE_MIN_SAMPLE = env.int("CONSOLE_BULK_PAUSE_MIN_SAMPLE", default=20)

# The overview raises an alarm when dead letters wait and no recorder has caught up for this
# long; workers check in six times as often.
DEAD_LETTER_RECORDING_STALL_SECONDS = env.float("DEAD_LETTER_RECORDING_STALL_SECONDS", default=60)
# The console's health banners: "last processed N s ago" once messages wait and nothing
# was stored for this long; a collection source failing this many runs in a row; a bulk
# job that failed within this many hours.
CONSOLE_STALE_PROCESSING_SECONDS = env.float("CONSOLE_STALE_PROCESSING_SECONDS", default=120)
CONSOLE_SOURCE_FAILING_RUNS = env.int("CONSOLE_SOURCE_FAILING_RUNS", default=3)
CONSOLE_FAILED_JOB_BANNER_HOURS = env.float("CONSOLE_FAILED_JOB_BANNER_HOURS", default=24)
# The compact health line on every console page reuses one reading for this long per process.
CONSOLE_HEALTH_CACHE_SECONDS = env.float("CONSOLE_HEALTH_CACHE_SECONDS", default=10)
# A failed message's page shows at most this much of its body (the rest is a download):
# a page stays small and fast whatever a message holds.
DEAD_LETTER_BODY_DISPLAY_BYTES = env.int("DEAD_LETTER_BODY_DISPLAY_BYTES", default=64 * 1024)
# ... and offers a body up to this size for editing in a text box (whole: an edit never
# starts from a cut-short body). Above the ingest API's largest request.
DEAD_LETTER_EDIT_MAX_BYTES = env.int("DEAD_LETTER_EDIT_MAX_BYTES", default=256 * 1024)

# Scheduler (python manage.py run_scheduler).
SCHEDULER_COLLECT_EVERY_SECONDS = env.int("SCHEDULER_COLLECT_EVERY_SECONDS", default=30)
SCHEDULER_ALERT_RULES_EVERY_SECONDS = env.int("SCHEDULER_ALERT_RULES_EVERY_SECONDS", default=60)
SCHEDULER_HOUSEKEEPING_EVERY_SECONDS = env.int("SCHEDULER_HOUSEKEEPING_EVERY_SECONDS", default=3600)
# A standby scheduler tries to become leader this often; the leader beats this often.
SCHEDULER_STANDBY_POLL_SECONDS = env.float("SCHEDULER_STANDBY_POLL_SECONDS", default=5)
SCHEDULER_CONTROL_POLL_SECONDS = env.float("SCHEDULER_CONTROL_POLL_SECONDS", default=1)
COLLECTION_TIMEOUT_SECONDS = env.float("COLLECTION_TIMEOUT_SECONDS", default=10)
COLLECTION_ATTEMPTS = env.int("COLLECTION_ATTEMPTS", default=3)
COLLECTION_RETRY_DELAY_SECONDS = env.float("COLLECTION_RETRY_DELAY_SECONDS", default=1)
COLLECTION_MAX_RESPONSE_BYTES = env.int("COLLECTION_MAX_RESPONSE_BYTES", default=1024 * 1024)
# Collection sources may not resolve to loopback, private or link-local addresses unless
# they are inside one of these networks (CIDR, e.g. "10.20.0.0/16" for an on-premises partner).
COLLECTION_ALLOWED_PRIVATE_NETWORKS = [
    str(ipaddress.ip_network(network, strict=False))
    for network in env.list("COLLECTION_ALLOWED_PRIVATE_NETWORKS", default=[])
]
ALERT_DEVICE_OFFLINE_MINUTES = env.int("ALERT_DEVICE_OFFLINE_MINUTES", default=30)
ALERT_INACTIVITY_HOURS = env.int("ALERT_INACTIVITY_HOURS", default=12)
# An open alert nobody acknowledged within this long is overdue: the console marks it and
# the scheduler's escalate_alerts job hands it to the on-call hook (when one is configured).
ALERT_ESCALATE_MINUTES = env.int("ALERT_ESCALATE_MINUTES", default=15)
SCHEDULER_ESCALATION_EVERY_SECONDS = env.int("SCHEDULER_ESCALATION_EVERY_SECONDS", default=30)
# The on-call system's webhook; empty: overdue alerts are marked, not escalated. Deliveries
# are signed like the webhooks we receive (Standard Webhooks, a whsec_ secret).
ALERT_ESCALATION_WEBHOOK_URL = env.str("ALERT_ESCALATION_WEBHOOK_URL", default="")
ALERT_ESCALATION_WEBHOOK_SECRET = env.str("ALERT_ESCALATION_WEBHOOK_SECRET", default="")
ALERT_ESCALATION_TIMEOUT_SECONDS = env.float("ALERT_ESCALATION_TIMEOUT_SECONDS", default=5)
# A failed delivery is tried again on a later run after 30 s, doubling up to this bound.
ALERT_ESCALATION_RETRY_MAX_SECONDS = env.int("ALERT_ESCALATION_RETRY_MAX_SECONDS", default=900)
# The console's live alert stream (server-sent events): each open console holds one web
# thread while its stream lasts, so a stream ends after this long (the browser reconnects
# where it left off) and a process serves at most this many at once.
ALERT_STREAM_SECONDS = env.float("ALERT_STREAM_SECONDS", default=25)
ALERT_STREAM_POLL_SECONDS = env.float("ALERT_STREAM_POLL_SECONDS", default=0.25)
ALERT_STREAMS_PER_PROCESS = env.int("ALERT_STREAMS_PER_PROCESS", default=4)
RETENTION_JOB_EXECUTIONS_DAYS = env.int("RETENTION_JOB_EXECUTIONS_DAYS", default=7)
RETENTION_LEDGER_DAYS = env.int("RETENTION_LEDGER_DAYS", default=30)
RETENTION_DISCARDED_DEAD_LETTERS_DAYS = env.int("RETENTION_DISCARDED_DEAD_LETTERS_DAYS", default=30)
RETENTION_COLLECTION_RUNS_DAYS = env.int("RETENTION_COLLECTION_RUNS_DAYS", default=14)
# Console and admin login records (django-axes: successful logins and failed attempts).
RETENTION_LOGIN_RECORDS_DAYS = env.int("RETENTION_LOGIN_RECORDS_DAYS", default=90)
APSCHEDULER_DATETIME_FORMAT = "Y-m-d H:i:s"
