"""RabbitMQ connection and topology settings."""

from .env import env

RABBITMQ_HOST = env.str("RABBITMQ_HOST", default="127.0.0.1")
RABBITMQ_PORT = env.int("RABBITMQ_PORT", default=5672)
RABBITMQ_USER = env.str("RABBITMQ_USER", default="guest")
RABBITMQ_PASSWORD = env.str("RABBITMQ_PASSWORD", default="guest")
RABBITMQ_VHOST = env.str("RABBITMQ_VHOST", default="/")
RABBITMQ_QUEUE_NAME = env.str("RABBITMQ_QUEUE_NAME", default="ingest")
# classic, or quorum for a replicated queue on a RabbitMQ cluster.
RABBITMQ_QUEUE_TYPE = env.str("RABBITMQ_QUEUE_TYPE", default="classic")
# Backpressure: past this many ready messages the broker refuses (nacks) new ones and
# the API answers 503 instead of letting the queue grow without bound.
RABBITMQ_QUEUE_MAX_LENGTH = env.int("RABBITMQ_QUEUE_MAX_LENGTH", default=1_000_000)
# How long a web request waits for the broker (connect, confirm) before answering 503.
RABBITMQ_PUBLISH_TIMEOUT_SECONDS = env.float("RABBITMQ_PUBLISH_TIMEOUT_SECONDS", default=5.0)
RABBITMQ_MANAGEMENT_URL = env.str("RABBITMQ_MANAGEMENT_URL", default="")
