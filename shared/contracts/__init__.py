"""The departments' domain events: the bus contract other services and integrators code against.

One module per department topic (crm.sales.v1, crm.marketing.v1, crm.support.v1,
crm.analytics.v1). Every message is keyed by the customer id where there is one, so one
customer's events stay in order. Versioning: a field may be added (optional); renaming or
removing one means a new type with the next ``.vN`` suffix.
"""

from pydantic import BaseModel

from shared.contracts import analytics, marketing, sales, support

# Every department event type and its data model (input for the generated schemas).
EVENT_TYPES: dict[str, type[BaseModel]] = {
    **sales.EVENT_TYPES,
    **marketing.EVENT_TYPES,
    **support.EVENT_TYPES,
    **analytics.EVENT_TYPES,
}
