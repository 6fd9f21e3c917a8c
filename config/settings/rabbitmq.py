"""RabbitMQ connection and topology settings."""

from .env import env

RABBITMQ_HOST = env.str("RABBITMQ_HOST", default="127.0.0.1")
RABBITMQ_PORT = env.int("RABBITMQ_PORT", default=5672)
# A cluster: every node as host:port, comma-separated (the port defaults to RABBITMQ_PORT).
# Set, it replaces RABBITMQ_HOST; every process fails over along it (ingest/broker/connection.py).
RABBITMQ_HOSTS = env.list("RABBITMQ_HOSTS", default=[])
RABBITMQ_USER = env.str("RABBITMQ_USER", default="guest")
RABBITMQ_PASSWORD = env.str("RABBITMQ_PASSWORD", default="guest")
RABBITMQ_VHOST = env.str("RABBITMQ_VHOST", default="/")
RABBITMQ_QUEUE_NAME = env.str("RABBITMQ_QUEUE_NAME", default="ingest")
# classic, or quorum for a replicated queue on a RabbitMQ cluster.
RABBITMQ_QUEUE_TYPE = env.str("RABBITMQ_QUEUE_TYPE", default="classic")
# Quorum queues only: deliveries without an ack after which the broker dead-letters a
# message (to <q>.dead). The product's INGEST_MAX_ATTEMPTS decides when a failing message
# gives up; this only catches one that kills its worker every time (topology.py).
RABBITMQ_DELIVERY_LIMIT = env.int("RABBITMQ_DELIVERY_LIMIT", default=50)
# Backpressure: past this many ready messages the broker refuses (nacks) new ones and
# the API answers 503 instead of letting the queue grow without bound.
RABBITMQ_QUEUE_MAX_LENGTH = env.int("RABBITMQ_QUEUE_MAX_LENGTH", default=1_000_000)
# How long a web request waits for the broker (connect, confirm) before answering 503.
RABBITMQ_PUBLISH_TIMEOUT_SECONDS = env.float("RABBITMQ_PUBLISH_TIMEOUT_SECONDS", default=5.0)
# The management API; on a cluster one URL per node, comma-separated, tried in order
# (any node answers for the whole cluster).
RABBITMQ_MANAGEMENT_URL = env.str("RABBITMQ_MANAGEMENT_URL", default="")
