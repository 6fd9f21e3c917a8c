"""The console's read replica: which database a query goes to, and whether the replica is fit.

With ``DATABASE_REPLICA_URL`` set there is a second database alias, ``replica``, a
streaming standby of the primary (same schema and rows, by replication). Only the
console's reading pages use it: a GET or HEAD under the console (pages and their
live-refresh fragments), marked by ``ReplicaReadMiddleware`` in a context variable that
``ReplicaRouter`` consults. Everything else reads and writes the primary: the ingest API
(it has its own middleware stack, without this one), the worker, the scheduler, the admin,
management commands, and every unsafe request.

Even on a console read some queries stay on the primary:

* authentication, sessions, permissions and login throttling (their apps are never routed):
  a session or user row read a moment stale would log people out or let a revoked one in;
* anything inside a transaction, and anything after the request wrote (or locked) a row:
  what a request wrote it reads back from where it wrote it;
* everything for a short while after the same browser's last unsafe request (a signed
  cookie, ``DATABASE_REPLICA_PIN_SECONDS``): an operator who requeues a message sees the
  result on the page the action redirects to, not the replica's view from before it;
* everything while the replica is down, not streaming, or further behind than
  ``DATABASE_REPLICA_MAX_LAG_SECONDS`` (a health banner says so). Its state is read at most
  every ``DATABASE_REPLICA_CHECK_SECONDS`` per process, with a short connect timeout; a page
  whose replica read fails anyway is served again from the primary.
"""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass
from functools import cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections, router
from django.urls import reverse

from ingest.probe_cache import RecentResults

logger = logging.getLogger(__name__)

REPLICA_ALIAS = "replica"
# Apps whose rows decide who the user is and what they may do: always the primary.
PRIMARY_ONLY_APPS = frozenset({"auth", "sessions", "contenttypes", "admin", "axes"})
PIN_COOKIE = "console_reads_primary"
_PIN_SALT = "config.replica.pin"
SAFE_METHODS = ("GET", "HEAD")

# True while the current request is a console read that may use the replica. Set per
# request by the middleware; False everywhere else (workers, commands, the API, threads).
_console_read = contextvars.ContextVar("console_read_from_replica", default=False)


def replica_configured() -> bool:
    return REPLICA_ALIAS in settings.DATABASES


def read_database(*, console_read: bool, app_label: str, in_transaction: bool) -> str:
    """The alias a read goes to: the replica only for a console read of replicated data."""
    if console_read and app_label not in PRIMARY_ONLY_APPS and not in_transaction:
        return REPLICA_ALIAS
    return DEFAULT_DB_ALIAS


class ReplicaRouter:
    """Reads of a console page to the replica (see the module's docstring); all else to the primary."""

    def db_for_read(self, model, **hints):
        if not _console_read.get():
            return DEFAULT_DB_ALIAS
        return read_database(
            console_read=True,
            app_label=model._meta.app_label,
            in_transaction=connections[DEFAULT_DB_ALIAS].in_atomic_block,
        )

    def db_for_write(self, model, **hints):
        # Writes and locks (select_for_update, get_or_create) go to the primary, and the
        # rest of this request reads there too: it may read back what it just wrote.
        _console_read.set(False)
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints):
        return True  # the same rows on both

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        # The replica gets its schema by replication (and refuses writes anyway).
        return db != REPLICA_ALIAS


def read_connection(model):
    """The connection for a raw SQL read of ``model``'s table: routed like the ORM's reads.

    Raw SQL on ``django.db.connection`` would always use the primary, while the rows it
    names are then loaded through the ORM, possibly from the replica.
    """
    return connections[router.db_for_read(model)]


# --- the replica's state ------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaStatus:
    """How the replica is doing; ``problem`` says why console reads use the primary ("": they don't)."""

    lag_seconds: float | None = None
    lag_bytes: int | None = None
    replay_paused: bool = False
    problem: str = ""

    @property
    def usable(self) -> bool:
        return not self.problem


# Seconds: 0 while everything received is replayed, so an idle primary is no lag. While
# WAL waits to be replayed, the time since the last replayed commit (after a quiet spell
# the first write briefly reads as that long; under steady writes it is the real lag).
_REPLICA_STATE_SQL = """
    SELECT pg_is_in_recovery(),
           (SELECT count(*) FROM pg_stat_wal_receiver),
           pg_last_wal_replay_lsn()::text,
           pg_is_wal_replay_paused(),
           CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END
"""


def _lsn_position(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [error.__class__.__name__])[0]


def replica_status_read() -> ReplicaStatus:
    """Ask the replica (and the primary, for the bytes) now."""
    try:
        with connections[REPLICA_ALIAS].cursor() as cursor:
            cursor.execute(_REPLICA_STATE_SQL)
            in_recovery, receivers, replay_lsn, paused, lag_seconds = cursor.fetchone()
    except DatabaseError as error:
        connections[REPLICA_ALIAS].close()  # the next use connects afresh
        return ReplicaStatus(problem=f"the read replica does not answer ({_first_line(error)})")
    lag_bytes = None
    if replay_lsn is not None:
        try:
            with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
                cursor.execute("SELECT pg_current_wal_flush_lsn()::text")
                lag_bytes = max(0, _lsn_position(cursor.fetchone()[0]) - _lsn_position(replay_lsn))
        except DatabaseError:
            logger.warning("replication lag in bytes unknown: the primary could not be read", exc_info=True)
    status = ReplicaStatus(
        lag_seconds=None if lag_seconds is None else float(lag_seconds),
        lag_bytes=lag_bytes,
        replay_paused=paused,
    )
    if not in_recovery:
        problem = "the read replica is not a standby (promoted?): its rows may differ from the primary's"
    elif not receivers:
        problem = "the read replica is not streaming from the primary"
    elif status.lag_seconds is None:
        problem = "the read replica's lag is unknown (nothing replayed since it started)"
    elif status.lag_seconds > settings.DATABASE_REPLICA_MAX_LAG_SECONDS:
        problem = (
            f"the read replica is {status.lag_seconds:.0f} s behind"
            f" (more than {settings.DATABASE_REPLICA_MAX_LAG_SECONDS:g} s)"
        )
    else:
        return status
    return ReplicaStatus(status.lag_seconds, status.lag_bytes, status.replay_paused, problem)


_RECENT_STATUS = RecentResults[ReplicaStatus](seconds_setting="DATABASE_REPLICA_CHECK_SECONDS")


def replica_status() -> ReplicaStatus | None:
    """The replica's state, reused for DATABASE_REPLICA_CHECK_SECONDS; None: no replica configured."""
    if not replica_configured():
        return None
    return _RECENT_STATUS.get("status", replica_status_read)


# --- per request ------------------------------------------------------------------------


@cache
def _console_paths() -> tuple[str, frozenset[str]]:
    """The console's URL prefix, and its pages that authenticate (never read from the replica)."""
    prefix = reverse("dashboard:overview")
    return prefix, frozenset({reverse("dashboard:login"), reverse("dashboard:logout")})


def is_console_read(request) -> bool:
    prefix, authenticating = _console_paths()
    return (
        request.method in SAFE_METHODS
        and request.path.startswith(prefix)
        and request.path not in authenticating
    )


def is_pinned_to_primary(request) -> bool:
    """This browser made an unsafe request less than DATABASE_REPLICA_PIN_SECONDS ago."""
    return (
        request.get_signed_cookie(
            PIN_COOKIE, default=None, salt=_PIN_SALT, max_age=settings.DATABASE_REPLICA_PIN_SECONDS
        )
        is not None
    )


class ReplicaReadMiddleware:
    """Marks console reads for ``ReplicaRouter``, and pins a browser to the primary after it writes."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not replica_configured():
            return self.get_response(request)
        from_replica = (
            is_console_read(request) and not is_pinned_to_primary(request) and replica_status().usable
        )
        token = _console_read.set(from_replica)
        try:
            response = self.get_response(request)
        finally:
            _console_read.reset(token)
        if request.method not in SAFE_METHODS and settings.DATABASE_REPLICA_PIN_SECONDS > 0:
            response.set_signed_cookie(
                PIN_COOKIE,
                "1",
                salt=_PIN_SALT,
                max_age=settings.DATABASE_REPLICA_PIN_SECONDS,
                httponly=True,
                samesite="Lax",
                secure=settings.SESSION_COOKIE_SECURE,
            )
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        request.replica_view = (view_func, view_args, view_kwargs)

    def process_exception(self, request, exception):
        """A replica read that failed (the replica went away since its last check): the page
        is served again from the primary, and the replica is checked afresh next time."""
        if not (_console_read.get() and isinstance(exception, OperationalError | InterfaceError)):
            return None
        if not connections[REPLICA_ALIAS].errors_occurred:
            return None  # the primary failed: nothing to fall back to
        view = getattr(request, "replica_view", None)
        if view is None:
            return None
        logger.warning("console read failed on the read replica; served from the primary: %s", exception)
        connections[REPLICA_ALIAS].close()
        _RECENT_STATUS.clear()
        _console_read.set(False)
        view_func, view_args, view_kwargs = view
        response = view_func(request, *view_args, **view_kwargs)
        if hasattr(response, "render") and callable(response.render):
            response = response.render()
        return response
