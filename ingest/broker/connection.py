"""Connection parameters for RabbitMQ, built from settings."""

import os

import pika
from django.conf import settings


class BrokerUnavailable(Exception):
    """The broker could not be reached or did not confirm a message."""


def connection_parameters(*, heartbeat: int | None = None, role: str = "client") -> pika.ConnectionParameters:
    timeout = settings.RABBITMQ_PUBLISH_TIMEOUT_SECONDS
    return pika.ConnectionParameters(
        host=settings.RABBITMQ_HOST,
        port=settings.RABBITMQ_PORT,
        virtual_host=settings.RABBITMQ_VHOST,
        credentials=pika.PlainCredentials(settings.RABBITMQ_USER, settings.RABBITMQ_PASSWORD),
        connection_attempts=1,
        socket_timeout=timeout,
        stack_timeout=timeout,
        # A broker under a memory or disk alarm blocks publishers: give up instead of hanging.
        blocked_connection_timeout=timeout,
        heartbeat=heartbeat,
        # Shown by RabbitMQ (rabbitmqctl list_connections name): which process holds what.
        client_properties={"connection_name": f"iot_care {role} pid={os.getpid()}"},
    )


def open_connection(*, heartbeat: int | None = None, role: str = "client") -> pika.BlockingConnection:
    return pika.BlockingConnection(connection_parameters(heartbeat=heartbeat, role=role))
