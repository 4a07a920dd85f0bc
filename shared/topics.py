"""Topic names: a public API that integrators code against. Never rename; version instead."""

from dataclasses import dataclass, field

INTERACTIONS = "crm.interactions.v1"
CONTACTS = "crm.contacts.v1"
SALES = "crm.sales.v1"
MARKETING = "crm.marketing.v1"
SUPPORT = "crm.support.v1"
ANALYTICS = "crm.analytics.v1"
DEAD_LETTER = "crm.deadletter.v1"
# Orders an integrator (an accounting system) publishes for sales to take in.
EXTERNAL_ORDERS = "crm.sales.external-orders.v1"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str] = field(default_factory=dict)


# crm.contacts.v1 is compacted: the latest message per contact id is that contact's state,
# and a tombstone (null value) after an erasure lets compaction remove the PII for good.
ALL_TOPICS = (
    TopicSpec(INTERACTIONS),
    TopicSpec(CONTACTS, {"cleanup.policy": "compact"}),
    TopicSpec(SALES),
    TopicSpec(MARKETING),
    TopicSpec(SUPPORT),
    TopicSpec(ANALYTICS),
    TopicSpec(DEAD_LETTER),
    TopicSpec(EXTERNAL_ORDERS),
)
