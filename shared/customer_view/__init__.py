"""The customer view every department service keeps: the shared timeline of every department's
touches (from crm.interactions.v1), each customer's contact preferences and the company contact
policy (from crm.contacts.v1), with merges and erasures applied. A service includes its tables
in its migrations, its subscriptions in its ServiceSpec and its router in its app."""

from shared.contact_rules import Reason
from shared.customer_view.api import router
from shared.customer_view.consumers import (
    batch_locked,
    file_under_first,
    ids_in,
    lock_the_way_first,
    subscriptions,
)
from shared.customer_view.models import (
    ContactPolicyRow,
    CustomerProfile,
    CustomerViewBase,
    ProfileStatus,
    TimelineEntry,
)
from shared.customer_view.projection import (
    TimelineFilters,
    TouchOutcome,
    contact_check,
    current_customer,
    current_customers,
    filed_under,
    item_fields,
    outbound_touches,
    policy,
    preferences,
    record_interactions,
    survivor,
    timeline,
)
from shared.customer_view.schemas import (
    BatchCreated,
    ContactCheck,
    Created,
    InteractionBatch,
    InteractionCreate,
    TimelineItem,
)

__all__ = [
    "BatchCreated",
    "ContactCheck",
    "ContactPolicyRow",
    "Created",
    "CustomerProfile",
    "CustomerViewBase",
    "InteractionBatch",
    "InteractionCreate",
    "ProfileStatus",
    "Reason",
    "TimelineEntry",
    "TimelineFilters",
    "TimelineItem",
    "TouchOutcome",
    "batch_locked",
    "contact_check",
    "current_customer",
    "current_customers",
    "file_under_first",
    "filed_under",
    "ids_in",
    "item_fields",
    "lock_the_way_first",
    "outbound_touches",
    "policy",
    "preferences",
    "record_interactions",
    "router",
    "subscriptions",
    "survivor",
    "timeline",
]
