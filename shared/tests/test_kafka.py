"""Topic creation: what the broker refuses is told, not logged as created."""

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.protocol.admin import CreateTopicsResponse_v3

from shared import topics
from shared.kafka import refused_topics


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
