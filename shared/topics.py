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
# Compaction removes the crm.contact.erased.v1 event too, so the tombstone, which carries that
# event's attributes, is all a replay finds of the erasure: it must outlive the person's
# touches, tickets and orders on the other topics (7 days by default, and operators raise
# that), or a rebuild would file them again. Kafka drops a tombstone delete.retention.ms
# after compacting it (1 day by default); here it stays for good: 100 years (it holds nothing
# personal: the contact id, the erasure's id and time). Not Long.MAX_VALUE: the cleaner adds
# it to the current time (KIP-534's delete horizon), which would overflow and drop the
# tombstone at the next cleaning.
TOMBSTONE_RETENTION_MS = 100 * 365 * 24 * 3600 * 1000
ALL_TOPICS = (
    TopicSpec(INTERACTIONS),
    TopicSpec(
        CONTACTS,
        {"cleanup.policy": "compact", "delete.retention.ms": str(TOMBSTONE_RETENTION_MS)},
    ),
    TopicSpec(SALES),
    TopicSpec(MARKETING),
    TopicSpec(SUPPORT),
    TopicSpec(ANALYTICS),
    TopicSpec(DEAD_LETTER),
    TopicSpec(EXTERNAL_ORDERS),
)
