"""MQTT through RabbitMQ's own plugins: devices publish to ``devices/<serial>/readings``
or ``devices/<serial>/events`` with their serial and key as login.

* ``access``: what the broker asks (``rabbitmq_auth_backend_http``): may this user log
  in, enter this vhost, touch this resource, publish with this routing key;
* ``views`` / ``urls``: those questions as the internal HTTP endpoints the broker calls
  (``/internal/broker-auth/<BROKER_AUTH_SECRET>/…``), never exposed through Caddy;
* ``topics``: the topic and routing-key vocabulary, and the bridge queue's bindings;
* ``bridge``: the worker's handler that takes what devices published from the durable
  ``<q>.mqtt`` queue through the one accept path (validation, content ids, confirm).
"""
