"""The wire contract's names: CloudEvents content types and the Kafka headers we write.

For code that reads or writes records itself (the saga observer, the gateway,
a tool of yours) instead of through a :class:`~choreokit.events.Service`; the
contract is described in ``docs/events.md``.
"""

from choreokit.events._dead_letter import (
    DLQ_SUFFIX,
    H_ATTEMPTS,
    H_CONSUMER_GROUP,
    H_ERROR_MESSAGE,
    H_ERROR_TYPE,
    H_FAILED_AT,
    H_ORIGINAL_OFFSET,
    H_ORIGINAL_PARTITION,
    H_ORIGINAL_TIMESTAMP,
    H_ORIGINAL_TOPIC,
)
from choreokit.events._dead_letter import HEADER_PREFIX as DLQ_HEADER_PREFIX
from choreokit.events._envelope import (
    BATCH_JSON,
    CE_HEADERS,
    H_CAUSATION,
    H_CONTENT_TYPE,
    H_CORRELATION,
    H_DATAVERSION,
    H_ID,
    H_SOURCE,
    H_SPECVERSION,
    H_TIME,
    H_TRACEPARENT,
    H_TRACESTATE,
    H_TYPE,
    JSON,
    SPECVERSION,
    STRUCTURED_JSON,
)

__all__ = [
    "BATCH_JSON",
    "CE_HEADERS",
    "DLQ_HEADER_PREFIX",
    "DLQ_SUFFIX",
    "H_ATTEMPTS",
    "H_CAUSATION",
    "H_CONSUMER_GROUP",
    "H_CONTENT_TYPE",
    "H_CORRELATION",
    "H_DATAVERSION",
    "H_ERROR_MESSAGE",
    "H_ERROR_TYPE",
    "H_FAILED_AT",
    "H_ID",
    "H_ORIGINAL_OFFSET",
    "H_ORIGINAL_PARTITION",
    "H_ORIGINAL_TIMESTAMP",
    "H_ORIGINAL_TOPIC",
    "H_SOURCE",
    "H_SPECVERSION",
    "H_TIME",
    "H_TRACEPARENT",
    "H_TRACESTATE",
    "H_TYPE",
    "JSON",
    "SPECVERSION",
    "STRUCTURED_JSON",
]
