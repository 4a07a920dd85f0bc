"""Topic set-up: existing topics get the platform's configs; what the broker refuses is told,
not logged as done. The producers' partitioner puts a key where every Kafka producer does."""

import os
import uuid

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.protocol.admin import CreateTopicsResponse_v3

from shared import topics
from shared.kafka import KeyPartitioner, ensure_topics, refused_resources, refused_topics
from shared.kafka_admin import IncrementalAlterConfigsResponse_v0
from shared.settings import KafkaSettings
from shared.testing import set_topic_configs

DAY_MS = "86400000"  # Kafka's default delete.retention.ms
WEEK_MS = "604800000"


async def topic_configs(bootstrap: str, topic: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    [(_, _, _, _, entries)] = response.resources
    return {entry[0]: entry[1] for entry in entries}


async def test_an_existing_topic_gets_the_platforms_configs_and_keeps_its_own(kafka_bootstrap):
    # A cluster whose crm.contacts.v1 was created before tombstones were kept for good: it
    # drops them a day after compaction. Its operator set a retention of their own.
    await set_topic_configs(
        kafka_bootstrap, topics.CONTACTS, {"delete.retention.ms": DAY_MS, "retention.ms": WEEK_MS}
    )
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)

    changes = await ensure_topics(settings)

    assert changes == [
        f"crm.contacts.v1: delete.retention.ms {DAY_MS} -> {topics.TOMBSTONE_RETENTION_MS}"
    ]
    configs = await topic_configs(kafka_bootstrap, topics.CONTACTS)
    assert configs["delete.retention.ms"] == str(topics.TOMBSTONE_RETENTION_MS)
    assert configs["cleanup.policy"] == "compact"
    assert configs["retention.ms"] == WEEK_MS  # the operator's own config stays
    assert await ensure_topics(settings) == []  # nothing left to change


def test_a_refused_config_is_named_with_the_brokers_reason():
    # What Apache Kafka answers a principal without AlterConfigs permission on the topic (the
    # embedded broker takes every config, so the answer is built here).
    response = IncrementalAlterConfigsResponse_v0(
        throttle_time_ms=0,
        responses=[
            (0, None, ConfigResourceType.TOPIC, topics.SALES),
            (29, "Authorization failed.", ConfigResourceType.TOPIC, topics.CONTACTS),
        ],
    )
    assert refused_resources(response.responses) == (
        "crm.contacts.v1: TopicAuthorizationFailedError (Authorization failed.)"
    )


async def test_a_topic_another_service_created_first_is_no_refusal(kafka_bootstrap):
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        # Two services starting at once both find the topic missing; the second is told
        # per topic that it exists (aiokafka raises nothing for it).
        response = await admin.create_topics([NewTopic(topics.INTERACTIONS, 1, 1)])
    finally:
        await admin.close()
    assert [code for _, code, _ in response.topic_errors] == [TopicAlreadyExistsError.errno]
    assert refused_topics(response.topic_errors) == ""


def test_a_refused_topic_is_named_with_the_brokers_reason():
    # What Apache Kafka answers when KAFKA_REPLICATION_FACTOR exceeds its brokers (the
    # embedded broker accepts any factor, so the answer is built here).
    response = CreateTopicsResponse_v3(
        throttle_time_ms=0,
        topic_errors=[
            (topics.INTERACTIONS, 0, None),
            (topics.CONTACTS, 38, "Replication factor: 3 larger than available brokers: 1."),
            (topics.SALES, 36, "Topic 'crm.sales.v1' already exists."),
        ],
    )
    assert refused_topics(response.topic_errors) == (
        "crm.contacts.v1: InvalidReplicationFactorError"
        " (Replication factor: 3 larger than available brokers: 1.)"
    )


# The Java client's own murmur2 test vectors (org.apache.kafka.common.utils.UtilsTest), hashes
# as Java's signed ints: the partition is (hash & 0x7fffffff) % partitions.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_a_key_lands_on_the_partition_the_java_client_picks():
    partitions = list(range(1000))
    for key, java_hash in JAVA_MURMUR2.items():
        expected = (java_hash & 0x7FFFFFFF) % len(partitions)
        assert KeyPartitioner()(key, partitions, partitions) == expected, key


def test_the_partitioner_agrees_with_aiokafkas_default_on_every_key():
    # A key sent elsewhere than the producers of an older release (aiokafka's default) sent it
    # would split a customer's events over two partitions: out of order across an upgrade.
    keys = [str(uuid.uuid4()).encode() for _ in range(2000)]  # the platform's keys
    keys += [os.urandom(length) for length in range(64) for _ in range(20)]  # every tail
    default, ours = DefaultPartitioner(), KeyPartitioner()
    for count in (1, 3, 6, 7, 48):
        partitions = list(range(count))
        for key in keys:
            assert ours(key, partitions, partitions) == default(key, partitions, partitions), key


def test_an_event_without_a_key_goes_to_an_available_partition():
    assert KeyPartitioner()(None, [0, 1, 2, 3], [2]) == 2
