"""RabbitMQ connection and topology settings."""

from .env import env

RABBITMQ_HOST = env.str("RABBITMQ_HOST", default="127.0.0.1")
RABBITMQ_PORT = env.int("RABBITMQ_PORT", default=5672)
RABBITMQ_USER = env.str("RABBITMQ_USER", default="guest")
RABBITMQ_PASSWORD = env.str("RABBITMQ_PASSWORD", default="guest")
RABBITMQ_VHOST = env.str("RABBITMQ_VHOST", default="/")
RABBITMQ_QUEUE_NAME = env.str("RABBITMQ_QUEUE_NAME", default="ingest")
# How long a web request waits for the broker (connect, confirm) before answering 503.
RABBITMQ_PUBLISH_TIMEOUT_SECONDS = env.float("RABBITMQ_PUBLISH_TIMEOUT_SECONDS", default=5.0)
