"""Kafka clients built from ``KafkaSettings`` (SASL/TLS included), and topic set-up."""

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, TopicAlreadyExistsError, for_code
from aiokafka.helpers import create_ssl_context
from aiokafka.partitioner import DefaultPartitioner
from murmurhash2 import murmurhash2

from shared.kafka_admin import AdminClient
from shared.settings import KafkaSettings
from shared.topics import ALL_TOPICS, TopicSpec

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


# The seed of the Java client's murmur2 (org.apache.kafka.common.utils.Utils.murmur2).
KAFKA_MURMUR2_SEED = 0x9747B28C


class KeyPartitioner(DefaultPartitioner):
    """aiokafka's default partitioner (the Java client's: murmur2 of the key, so a key lands
    where every Kafka producer puts it), with the hash computed in C: aiokafka's pure-Python
    murmur2 cost about 7 us a message, a quarter of the relay's CPU per row (relay_bench.py)."""

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return super().__call__(key, all_partitions, available)
        hashed = murmurhash2(key, KAFKA_MURMUR2_SEED) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def new_producer(settings: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **connection_options(settings),
        client_id=client_id,
        partitioner=KeyPartitioner(),
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


class TopicsNotConfigured(RuntimeError):
    """The broker refused to read or set existing topics' configs (no permission, a value it
    does not take, a broker older than Kafka 2.3...): a topic keeps configs the platform
    relies on being otherwise (erasure tombstones kept for a day, say)."""


def refused_resources(resources: list[Any]) -> str:
    """What a DescribeConfigs or IncrementalAlterConfigs answer refused, per topic, as
    ``topic: error (message)``, or "" for nothing (aiokafka raises none of them)."""
    refused = []
    for code, message, _, name, *_ in resources:
        if code != 0:
            detail = f" ({message})" if message else ""
            refused.append(f"{name}: {for_code(code).__name__}{detail}")
    return "; ".join(refused)


async def ensure_topics(settings: KafkaSettings) -> list[str]:
    """Create the platform's missing topics, and set the configs ``shared.topics`` gives a
    topic on existing topics whose value differs (a cluster created before the config was
    added); a topic's other configs stay as the operator set them. Idempotent (a deploy job
    may own this). Returns what it changed, one line each."""
    admin = AdminClient(**connection_options(settings), client_id="crm-topic-setup")
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
        changes = [f"created {topic.name}" for topic in missing]
        if missing:
            response = await admin.create_topics(missing)
            refused = refused_topics(response.topic_errors)
            if refused:
                raise TopicsNotCreated(refused)
            log.info("created topics", extra={"topics": [t.name for t in missing]})
        configured = [spec for spec in ALL_TOPICS if spec.name in existing and spec.config]
        changes += await _align_configs(admin, configured)
        return changes
    finally:
        await admin.close()


async def _align_configs(admin: AdminClient, specs: list[TopicSpec]) -> list[str]:
    """Set each spec's configs whose value on the broker differs; what changed, one line each."""
    if not specs:
        return []
    # All of each topic's configs: the embedded broker drops the connection on a request
    # naming some.
    described = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, spec.name) for spec in specs]
    )
    resources = [resource for response in described for resource in response.resources]
    refused = refused_resources(resources)
    if refused:
        raise TopicsNotConfigured(f"could not read the topics' configs: {refused}")
    # On Apache Kafka an unset config reads as its default; the embedded broker leaves it out.
    current = {
        name: {entry[0]: entry[1] for entry in entries} for _, _, _, name, entries in resources
    }
    stale = {
        spec.name: {
            key: value for key, value in spec.config.items() if current[spec.name].get(key) != value
        }
        for spec in specs
    }
    stale = {topic: configs for topic, configs in stale.items() if configs}
    if not stale:
        return []
    wanted = ", ".join(f"{topic} {configs}" for topic, configs in stale.items())
    try:
        response = await admin.set_topic_configs(stale)
    except IncompatibleBrokerVersion as exc:
        raise TopicsNotConfigured(
            f"the broker does not take IncrementalAlterConfigs (Apache Kafka 2.3 or later);"
            f" set these by hand: {wanted}"
        ) from exc
    refused = refused_resources(response.responses)
    if refused:
        raise TopicsNotConfigured(f"could not set {wanted}: {refused}")
    changes = [
        f"{topic}: {key} {current[topic].get(key, '(unset)')} -> {value}"
        for topic, configs in stale.items()
        for key, value in configs.items()
    ]
    log.warning("changed existing topics' configs", extra={"changes": changes})
    return changes
