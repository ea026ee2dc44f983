"""Kafka client construction in one place: options, the idempotence probe, topic creation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import (
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    for_code,
)
from aiokafka.protocol.transaction import InitProducerIdRequest

from choreokit.events._errors import (
    BrokerUnavailableError,
    ConfigurationError,
    TransactionsUnavailableError,
)
from choreokit.events._partitioner import KeyPartitioner
from choreokit.events._security import faststream_security, security_options
from choreokit.events._settings import Idempotence, KafkaSettings, Profile, millis

logger = logging.getLogger("choreokit.kafka")

_PROBE_RETRY = 0.1
"""Seconds between producer-id requests while the broker says its coordinator is loading."""


def broker_unavailable(
    settings: KafkaSettings, exc: BaseException, doing: str
) -> BrokerUnavailableError:
    """Return the error that says the cluster could not be reached, and what to check."""
    return BrokerUnavailableError(
        f"cannot reach Kafka at {settings.bootstrap} ({doing}: {exc}); is the broker running? "
        "('choreo broker' starts the embedded one; CHOREO_KAFKA_BOOTSTRAP points elsewhere)"
    )


def bootstrap_servers(settings: KafkaSettings) -> list[str]:
    """``CHOREO_KAFKA_BOOTSTRAP`` as the list of ``host:port`` the clients take."""
    return [host.strip() for host in settings.bootstrap.split(",") if host.strip()]


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Options every aiokafka client of a service shares (connection and security).

    The bootstrap servers go as a list: FastStream's broker wraps a string in a
    list unsplit, so ``"a:9092,b:9092"`` would reach aiokafka as one bad host.

    Raises:
        ConfigurationError: The security settings cannot work, or are refused in production.
    """
    return {
        "bootstrap_servers": bootstrap_servers(settings),
        "request_timeout_ms": millis(settings.request_timeout),
        **security_options(settings),
    }


def broker_options(settings: KafkaSettings) -> dict[str, Any]:
    """The same connection for FastStream's ``KafkaBroker`` (its ``security`` object)."""
    return {
        "bootstrap_servers": bootstrap_servers(settings),
        "request_timeout_ms": millis(settings.request_timeout),
        **faststream_security(settings),
    }


def consumer_options(settings: KafkaSettings) -> dict[str, Any]:
    """Options of a group consumer (beyond the client's): new groups start at the earliest offset.

    Auto-commit is off wherever a consumer is built: FastStream derives it from
    the manual ack policy, and bare consumers pass ``enable_auto_commit=False``.
    """
    return {
        "auto_offset_reset": "earliest",
        "session_timeout_ms": millis(settings.timing("session_timeout")),
        "heartbeat_interval_ms": millis(settings.timing("heartbeat_interval")),
        "fetch_max_wait_ms": millis(settings.timing("fetch_max_wait")),
        "max_poll_records": settings.max_batch,
        "max_poll_interval_ms": millis(settings.max_poll_interval),
        **reader_options(settings),
    }


def reader_options(settings: KafkaSettings) -> dict[str, Any]:
    """What any consumer reads of transactional topics.

    ``read_committed`` when transactions are on, or as ``CHOREO_KAFKA_ISOLATION`` says.
    """
    return {"isolation_level": settings.isolation_level().value}


MAX_BATCH_BYTES = 256 * 1024
"""Largest record batch the producer builds per partition (aiokafka's default: 16 KiB).

A record carries its CloudEvents headers (about 350 bytes), so a 16 KiB batch
held about 45: a poll's outputs to one partition filled several, and each full
batch made the next send wait for it to drain, a loop turn (and a task) per
batch in the middle of the hop. A quarter of the broker's default
``message.max.bytes`` (1 MiB) takes a 500-record poll's outputs per partition.
"""


def producer_options(settings: KafkaSettings, *, idempotent: bool) -> dict[str, Any]:
    """Options of the producer: every in-sync replica acknowledges each record."""
    return {
        **client_options(settings),
        "acks": "all",
        "enable_idempotence": idempotent,
        "linger_ms": millis(settings.linger),
        "max_batch_size": MAX_BATCH_BYTES,
        "partitioner": KeyPartitioner(),
    }


async def broker_grants_producer_ids(settings: KafkaSettings) -> tuple[bool, str]:
    """Ask the cluster for a producer id, the first step of an idempotent producer.

    Returns:
        Whether the broker granted one, and a phrase saying why not.

    Raises:
        BrokerUnavailableError: The cluster could not be reached.
    """
    client = AIOKafkaClient(**client_options(settings))
    deadline = time.monotonic() + settings.request_timeout.total_seconds()
    try:
        await client.bootstrap()
        while True:
            node = client.get_random_node()
            if node is None:
                raise BrokerUnavailableError(f"no broker answered at {settings.bootstrap}")
            response = await client.send(
                node, InitProducerIdRequest(transactional_id=None, transaction_timeout_ms=60_000)
            )
            # A Kafka broker that has just started answers "coordinator loading" for a
            # moment: that is a "not yet", not a refusal (Tansu refuses for good).
            if response.error_code == 0 or not for_code(response.error_code).retriable:
                break
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(_PROBE_RETRY)
    except KafkaError as exc:
        raise broker_unavailable(settings, exc, "asking for a producer id") from exc
    finally:
        await client.close()
    if response.error_code == 0:
        return True, "broker granted a producer id"
    return False, f"broker refused InitProducerId (error code {response.error_code})"


async def resolve_idempotence(settings: KafkaSettings) -> bool:
    """Decide whether the producer is idempotent, and log the decision and its reason."""
    if settings.idempotence is Idempotence.ON:
        logger.info("producer idempotence on (CHOREO_KAFKA_IDEMPOTENCE=on)")
        return True
    if settings.idempotence is Idempotence.OFF:
        logger.info("producer idempotence off (CHOREO_KAFKA_IDEMPOTENCE=off)")
        return False
    granted, reason = await broker_grants_producer_ids(settings)
    # Refusal is expected of the embedded broker; in production it deserves attention.
    level = (
        logging.WARNING if not granted and settings.profile is Profile.PRODUCTION else logging.INFO
    )
    logger.log(
        level,
        "producer idempotence %s: %s (CHOREO_KAFKA_IDEMPOTENCE=auto; set on/off to decide)",
        "on" if granted else "off",
        reason,
    )
    return granted


async def start_producer(settings: KafkaSettings, *, client_id: str) -> AIOKafkaProducer:
    """Build and start a producer with acks=all and the resolved idempotence."""
    idempotent = await resolve_idempotence(settings)
    producer = AIOKafkaProducer(
        client_id=client_id, **producer_options(settings, idempotent=idempotent)
    )
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        raise broker_unavailable(settings, exc, "starting a producer") from exc
    return producer


_TOPIC_EXISTS = TopicAlreadyExistsError.errno
_NOT_AUTHORIZED = TopicAuthorizationFailedError.errno


def _report_created(wanted: list[str], errors: Iterable[tuple[Any, ...]]) -> None:
    """Log what was created; warn of what the principal may not create; raise on the rest.

    The broker answers per topic (``(name, error_code[, message])``), and a refusal
    is not an exception of the admin client: without this a refused creation was
    logged as created.
    """
    codes = {str(entry[0]): int(entry[1]) for entry in errors}
    created = [t for t in wanted if codes.get(t, 0) in (0, _TOPIC_EXISTS)]
    refused = [t for t in wanted if codes.get(t) == _NOT_AUTHORIZED]
    failed = {t: c for t, c in codes.items() if c not in (0, _TOPIC_EXISTS, _NOT_AUTHORIZED)}
    if created:
        logger.info("created topics %s", ", ".join(created))
    if refused:
        logger.warning(
            "not allowed to create topics %s (no CREATE ACL): they must be made by an admin, "
            "e.g. with 'choreo topics create' before the services start",
            ", ".join(refused),
        )
    if failed:
        reasons = "; ".join(f"{t}: {for_code(c).__name__}" for t, c in sorted(failed.items()))
        raise ConfigurationError(
            f"the broker refused to create topics ({reasons}); check "
            "CHOREO_KAFKA_TOPIC_PARTITIONS and CHOREO_KAFKA_TOPIC_REPLICATION against the cluster"
        )


async def ensure_topics(settings: KafkaSettings, topics: Iterable[str]) -> None:
    """Create the topics that do not exist yet, with the configured partitions and replication.

    A topic the principal may not create is logged as a warning (an admin makes
    it, as under least-privilege ACLs); it is not an error here.

    Raises:
        BrokerUnavailableError: The cluster cannot be reached.
        ConfigurationError: The broker refused a topic for another reason (its
            partitions or replication factor, say).
    """
    wanted = sorted(set(topics))
    if not wanted:
        return
    admin = AIOKafkaAdminClient(**client_options(settings))
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return
        new = [NewTopic(t, settings.topic_partitions, settings.topic_replication) for t in missing]
        # Another service may create one between our listing and our request.
        with contextlib.suppress(TopicAlreadyExistsError):
            response = await admin.create_topics(new)
            _report_created(missing, response.topic_errors)
    except KafkaError as exc:
        raise broker_unavailable(settings, exc, "creating topics") from exc
    finally:
        await admin.close()


async def start_transactional_producer(
    settings: KafkaSettings, *, client_id: str, transactional_id: str
) -> AIOKafkaProducer:
    """Start a transactional producer, fencing any earlier one of ``transactional_id``.

    Its first transaction is begun and aborted at once: that waits for the
    broker's producer id (so a broker without transactions is found here, not
    at the first batch) and ends whatever transaction a crashed predecessor left
    open.

    Raises:
        TransactionsUnavailableError: The broker cannot run transactions (Tansu).
        BrokerUnavailableError: The cluster could not be reached.
    """
    granted, reason = await broker_grants_producer_ids(settings)
    if not granted:
        raise _no_transactions(settings, reason)
    producer = AIOKafkaProducer(
        client_id=client_id,
        transactional_id=transactional_id,
        transaction_timeout_ms=millis(settings.transaction_timeout),
        **producer_options(settings, idempotent=True),
    )
    try:
        await producer.start()
        async with asyncio.timeout(settings.request_timeout.total_seconds()):
            await producer.begin_transaction()
            await producer.abort_transaction()
    except TimeoutError as exc:
        await stop_quietly(producer)
        raise TransactionsUnavailableError(
            f"no transactional producer id was granted to {transactional_id!r} at "
            f"{settings.bootstrap} within {settings.request_timeout}: either this principal may "
            "not use that transactional id (it needs WRITE and DESCRIBE on the TransactionalId; "
            "'choreo topics acls' prints them with CHOREO_KAFKA_TRANSACTIONS=on) or the "
            "broker's transaction coordinator is not available"
        ) from exc
    except KafkaError as exc:
        await stop_quietly(producer)
        if isinstance(exc, TransactionalIdAuthorizationFailed):
            raise TransactionsUnavailableError(
                f"the broker refused transactional id {transactional_id!r} ({exc}); grant the "
                "service's principal WRITE and DESCRIBE on that TransactionalId"
            ) from exc
        raise broker_unavailable(settings, exc, "starting a transactional producer") from exc
    logger.info("transactional producer %s ready", transactional_id)
    return producer


def _no_transactions(settings: KafkaSettings, reason: str) -> TransactionsUnavailableError:
    return TransactionsUnavailableError(
        f"CHOREO_KAFKA_TRANSACTIONS=on, but the broker at {settings.bootstrap} cannot run "
        f"Kafka transactions ({reason}). The embedded broker (Tansu) has none: use Apache "
        "Kafka for exactly-once hops, or set CHOREO_KAFKA_TRANSACTIONS=off (at-least-once, "
        "effectively-once through the inbox)"
    )


async def stop_quietly(producer: AIOKafkaProducer) -> None:
    """Stop ``producer``, which may have failed for good (its stop then raises why)."""
    with contextlib.suppress(Exception):
        await producer.stop()
