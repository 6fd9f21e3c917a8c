"""RabbitMQ access shared by the web tier, the worker and the tests."""
