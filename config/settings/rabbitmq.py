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

# MQTT through RabbitMQ's own plugins (rabbitmq_mqtt, rabbitmq_auth_backend_http): devices
# log in with serial and key, which the broker checks through the web tier (ingest/mqtt/).
# On: the worker (consume_queue) also runs the bridge from <RABBITMQ_QUEUE_NAME>.mqtt.
MQTT_ENABLED = env.bool("MQTT_ENABLED", default=False)
# The broker's MQTT listener (documentation and deploy/setup.sh; 1883 is MQTT's own port).
MQTT_PORT = env.int("MQTT_PORT", default=1883)
# The vhost MQTT devices are let into (rabbitmq_mqtt's mqtt.vhost).
MQTT_VHOST = env.str("MQTT_VHOST", default="/")
# The secret path segment the broker's auth_http URLs carry (/internal/broker-auth/<secret>/…).
# Empty: the endpoints answer 404 to everyone (production requires it when MQTT_ENABLED).
BROKER_AUTH_SECRET = env.str("BROKER_AUTH_SECRET", default="")
