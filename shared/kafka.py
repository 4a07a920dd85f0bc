"""Kafka clients built from ``KafkaSettings`` (SASL/TLS included), and topic creation."""

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context

from shared.settings import KafkaSettings
from shared.topics import ALL_TOPICS

log = logging.getLogger(__name__)


def connection_options(settings: KafkaSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile, certfile=settings.ssl_certfile, keyfile=settings.ssl_keyfile
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


def new_producer(settings: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=0,
        request_timeout_ms=10_000,
    )


def new_consumer(
    settings: KafkaSettings, *topics: str, group_id: str, client_id: str
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        **connection_options(settings),
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,  # offsets are committed only after the DB commit
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        session_timeout_ms=settings.session_timeout_ms,
        heartbeat_interval_ms=settings.heartbeat_interval_ms,
        # How long a rebalance waits for members to finish the batches they are applying
        # (shared.consumer commits them before giving partitions up); aiokafka's default, the
        # session timeout, can be shorter than a batch takes. A dead member is still dropped
        # after the session timeout.
        rebalance_timeout_ms=max(settings.session_timeout_ms, 60_000),
    )


class TopicsNotCreated(RuntimeError):
    """The broker refused to create topics (a replication factor above its broker count, a
    config it does not take...): the services cannot run without them."""


def refused_topics(topic_errors: list[Any]) -> str:
    """What CreateTopics refused, as ``topic: error (message)``, or "" for nothing. The broker
    answers per topic, and aiokafka raises none of them; a topic that exists already (another
    service created it first) is no refusal."""
    refused = []
    for topic, code, *message in topic_errors:
        if code in (0, TopicAlreadyExistsError.errno):
            continue
        detail = f" ({message[0]})" if message and message[0] else ""
        refused.append(f"{topic}: {for_code(code).__name__}{detail}")
    return "; ".join(refused)


async def ensure_topics(settings: KafkaSettings) -> None:
    """Create the platform's topics if missing (idempotent; a deploy job may own this)."""
    admin = AIOKafkaAdminClient(**connection_options(settings), client_id="crm-topic-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(
                spec.name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.replication_factor,
                topic_configs=spec.config,
            )
            for spec in ALL_TOPICS
            if spec.name not in existing
        ]
        if missing:
            response = await admin.create_topics(missing)
            refused = refused_topics(response.topic_errors)
            if refused:
                raise TopicsNotCreated(refused)
            log.info("created topics", extra={"topics": [t.name for t in missing]})
    finally:
        await admin.close()
