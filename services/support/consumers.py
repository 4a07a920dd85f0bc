"""What support does with other services' events: the shared customer view (every department's
touches, preferences, policy) plus support's own records on merges and erasures."""

import functools

from services.support import customers
from shared import customer_view
from shared.consumer import Subscription


def subscriptions(stand_in_key: bytes) -> list[Subscription]:
    """``stand_in_key``: the service's key of unknown senders' stand-in ids, which a contact's
    identities are looked up by to re-point the tickets those senders opened."""
    return customer_view.subscriptions(
        on_contact=functools.partial(customers.contact_changed, stand_in_key=stand_in_key),
        # Intake takes an unknown sender's stand-in locks, then the contact's: so does this.
        locks_before_contact=functools.partial(customers.stand_ins_of, stand_in_key=stand_in_key),
        read_for_contacts=functools.partial(customers.read_for_contacts, stand_in_key=stand_in_key),
        on_merged=customers.contact_merged,
        on_erased=customers.contact_erased,
    )
