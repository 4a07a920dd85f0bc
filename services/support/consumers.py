"""What support does with other services' events: the shared customer view (every department's
touches, preferences, policy) plus support's own records on merges and erasures."""

from services.support import customers
from shared import customer_view

SUBSCRIPTIONS = customer_view.subscriptions(
    on_contact=customers.contact_changed,
    on_merged=customers.contact_merged,
    on_erased=customers.contact_erased,
)
