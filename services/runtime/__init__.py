"""The service runtime: the embedded broker, the Apache Kafka rig, discovery and supervision.

Its other public modules are imported by name, so that a command that needs
none of them starts without loading a web framework or a database driver:
``app`` (:class:`~choreokit.services.runtime.app.Runtime`, what a service
factory gets), ``http`` (the HTTP kit every HTTP app uses: health, metrics,
:class:`~choreokit.services.runtime.http.HttpServer`), ``problems`` (RFC 9457
answers), ``limits`` (connection limits), ``access`` (operator access),
``database``, ``discovery``, ``environment`` and ``supervisor``.
"""

from choreokit.services.runtime.embedded_broker import (
    EmbeddedBroker,
    answers_kafka,
    free_port,
    port_is_free,
    resolve_binary,
)
from choreokit.services.runtime.kafka_artifacts import (
    KAFKA_VERSION,
    KafkaArtifacts,
    KafkaRigError,
    pinned_version,
    resolve_artifacts,
)
from choreokit.services.runtime.kafka_cluster import KafkaCluster, KafkaNode, brokers_in_metadata

__all__ = [
    "KAFKA_VERSION",
    "EmbeddedBroker",
    "KafkaArtifacts",
    "KafkaCluster",
    "KafkaNode",
    "KafkaRigError",
    "answers_kafka",
    "brokers_in_metadata",
    "free_port",
    "pinned_version",
    "port_is_free",
    "resolve_artifacts",
    "resolve_binary",
]
