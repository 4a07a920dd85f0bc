"""aiokafka's admin client plus IncrementalAlterConfigs (KIP-339), which aiokafka lacks.

aiokafka only has AlterConfigs, which replaces a topic's whole set of overrides (every config
not named goes back to its default: an operator's own retention.ms would be lost) and which the
embedded broker does not implement. IncrementalAlterConfigs sets only the configs it names; it
is in Apache Kafka since 2.3 and in the embedded broker. Version 0 is declared with aiokafka's
own protocol types, as aiokafka declares the other requests.
"""

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResourceType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

SET = 0  # AlterConfigOp.OpType.SET; the others (DELETE, APPEND, SUBTRACT) are not used here


class IncrementalAlterConfigsResponse_v0(Response):  # noqa: N801 (aiokafka's naming)
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        (
            "responses",
            Array(
                ("error_code", Int16),
                ("error_message", String("utf-8")),
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
            ),
        ),
    )


class IncrementalAlterConfigsRequest_v0(RequestStruct):  # noqa: N801
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        (
            "resources",
            Array(
                ("resource_type", Int8),
                ("resource_name", String("utf-8")),
                (
                    "configs",
                    Array(
                        ("name", String("utf-8")),
                        ("config_operation", Int8),
                        ("value", String("utf-8")),
                    ),
                ),
            ),
        ),
        ("validate_only", Boolean),
    )


class IncrementalAlterConfigsRequest(Request[IncrementalAlterConfigsRequest_v0]):
    API_KEY = 44

    def __init__(self, topic_configs: dict[str, dict[str, str]]) -> None:
        self._resources = [
            (
                ConfigResourceType.TOPIC,
                topic,
                [(name, SET, value) for name, value in configs.items()],
            )
            for topic, configs in topic_configs.items()
        ]

    def build(
        self, request_struct_class: type[IncrementalAlterConfigsRequest_v0]
    ) -> IncrementalAlterConfigsRequest_v0:
        return request_struct_class(self._resources, False)


class AdminClient(AIOKafkaAdminClient):
    async def set_topic_configs(
        self, topic_configs: dict[str, dict[str, str]]
    ) -> IncrementalAlterConfigsResponse_v0:
        """Set the given configs of each topic, leaving its other configs as they are.
        Raises ``IncompatibleBrokerVersion`` if the broker lacks IncrementalAlterConfigs; the
        broker's answer per topic is in the response's ``responses``."""
        # Any broker takes a topic's configs (KRaft forwards them to the controller), as
        # aiokafka's own alter_configs sends them.
        response = await self._send_request(IncrementalAlterConfigsRequest(topic_configs))
        assert isinstance(response, IncrementalAlterConfigsResponse_v0)
        return response
