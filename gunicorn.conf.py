"""gunicorn settings for the web tier (``gunicorn -c gunicorn.conf.py config.wsgi``)."""

import multiprocessing
import os
import shutil
import tempfile

from config.observability import gunicorn_logging_config, metrics_directory_clear_stale

# Loopback unless told otherwise: the web tier is reached through the proxy (Caddyfile).
# A container must listen on all of its own interfaces; the image and compose set that.
bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('WEB_PORT', '8000')}")
# Threaded workers: a kept-alive connection waits in the worker's poller, and a client that
# connects and sends nothing gives its thread back after a few seconds; only a request that
# is being received or answered holds a thread. So a handful of slow clients cannot stop
# the site even without the proxy, and behind it (Caddyfile: request_buffers) bodies arrive
# whole. Each thread may hold a database connection: PostgreSQL sees up to workers × threads.
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", multiprocessing.cpu_count() + 1))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
# Bounded request lines and headers; the body limit is the API's own (413).
limit_request_line = 8190
limit_request_fields = 100
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
# gunicorn's own lines (access and error) in the same format as the application's.
logconfig_dict = gunicorn_logging_config(
    level=loglevel.upper(), json_format=os.environ.get("LOG_FORMAT", "plain") == "json"
)
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No runtime control socket: nothing here uses gunicornc, and every gunicorn of a user
# would otherwise share one socket path in its home folder.
control_socket_disable = True

_private_metrics_directory = None


def on_starting(server):
    """Metrics of all workers are added up from files: start with none of a process gone.

    Without PROMETHEUS_MULTIPROC_DIR the server gets a private folder, made here, inherited
    by its workers and removed when it stops. A folder named by PROMETHEUS_MULTIPROC_DIR may
    be shared with other servers and consumers of the host that are running now: only the
    files of processes that have ended are removed (config/observability.py).
    """
    global _private_metrics_directory
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        directory = _private_metrics_directory = tempfile.mkdtemp(prefix="iot_care_metrics_")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    os.makedirs(directory, exist_ok=True)
    metrics_directory_clear_stale(directory)


def on_exit(server):
    if _private_metrics_directory:
        shutil.rmtree(_private_metrics_directory, ignore_errors=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def post_fork(server, worker):
    """A broker connection must never be shared across processes: open one per worker."""
    from ingest.broker.publisher import publisher_reset

    publisher_reset()
