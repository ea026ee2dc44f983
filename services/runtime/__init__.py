"""The service runtime: the embedded broker, service discovery and process supervision."""

from choreokit.services.runtime.embedded_broker import (
    EmbeddedBroker,
    answers_kafka,
    free_port,
    port_is_free,
    resolve_binary,
)

__all__ = ["EmbeddedBroker", "answers_kafka", "free_port", "port_is_free", "resolve_binary"]
