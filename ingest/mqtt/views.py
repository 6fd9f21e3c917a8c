"""The endpoints rabbitmq_auth_backend_http calls (``auth_http.*_path``).

The broker POSTs form fields and reads a plain-text answer: ``allow`` or ``deny``. The
URLs carry BROKER_AUTH_SECRET as a path segment (RabbitMQ 3.10's backend sends no header
of ours, and a path needs no query-string handling in the broker's config); a wrong or
missing secret, or none configured, is a 404 like any unknown path. Caddy refuses
``/internal/`` as a whole: only the broker, on the internal network, reaches these.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ingest.mqtt.access import (
    broker_resource_allowed,
    broker_topic_allowed,
    broker_user_allowed,
    broker_vhost_allowed,
)


def _answer(allowed: bool) -> HttpResponse:
    return HttpResponse("allow" if allowed else "deny", content_type="text/plain")


def _secret_check(secret: str) -> None:
    expected = settings.BROKER_AUTH_SECRET
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise Http404


def broker_endpoint(question):
    """A view answering ``question(fields)`` for the broker, behind the secret."""

    @csrf_exempt
    @require_POST
    def view(request: HttpRequest, secret: str) -> HttpResponse:
        _secret_check(secret)
        return _answer(question(request.POST))

    view.__name__ = question.__name__
    return view


@broker_endpoint
def broker_user(fields) -> bool:
    return broker_user_allowed(username=fields.get("username", ""), password=fields.get("password", ""))


@broker_endpoint
def broker_vhost(fields) -> bool:
    return broker_vhost_allowed(vhost=fields.get("vhost", ""))


@broker_endpoint
def broker_resource(fields) -> bool:
    return broker_resource_allowed(
        vhost=fields.get("vhost", ""),
        resource=fields.get("resource", ""),
        name=fields.get("name", ""),
        permission=fields.get("permission", ""),
    )


@broker_endpoint
def broker_topic(fields) -> bool:
    return broker_topic_allowed(
        username=fields.get("username", ""),
        vhost=fields.get("vhost", ""),
        name=fields.get("name", ""),
        permission=fields.get("permission", ""),
        routing_key=fields.get("routing_key", ""),
    )
