"""Print shell assignments for the parts of DATABASE_URL and the RabbitMQ address.

deploy/setup.sh evaluates the output, so that the shell and Django read one URL the same way.
"""

import os
import shlex

import environ

env = environ.Env()
database = env.db_url_config(
    os.environ.get("DATABASE_URL", "postgres://iot_care:iot_care@127.0.0.1:5432/iot_care")
)
# A cluster (RABBITMQ_HOSTS): setup checks the first node, as the processes try it first.
first_node = os.environ.get("RABBITMQ_HOSTS", "").split(",")[0].strip()
node_host, _, node_port = first_node.rpartition(":") if ":" in first_node else (first_node, "", "")
parts = {
    "DB_HOST": database.get("HOST") or "127.0.0.1",
    "DB_PORT": database.get("PORT") or 5432,
    "DB_USER": database.get("USER") or "",
    "DB_PASSWORD": database.get("PASSWORD") or "",
    "DB_NAME": database.get("NAME") or "",
    "RABBITMQ_HOST": node_host.strip("[]") or os.environ.get("RABBITMQ_HOST", "127.0.0.1"),
    "RABBITMQ_PORT": node_port or os.environ.get("RABBITMQ_PORT", "5672"),
}
for name, value in parts.items():
    print(f"{name}={shlex.quote(str(value))}")
