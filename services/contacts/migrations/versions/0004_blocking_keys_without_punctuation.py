"""duplicate-blocking keys without punctuation or spaces (O'Neil, O’Neil, O Neil: one key)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 22:00:00
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CONTACTS = sa.table(
    "contacts",
    sa.column("id", sa.Uuid()),
    sa.column("last_name", sa.String(100)),
    sa.column("company", sa.String(200)),
    sa.column("last_name_key", sa.String(100)),
    sa.column("company_key", sa.String(200)),
)

_LETTER_APOSTROPHES = frozenset("\u02bb\u02bc\u02bd")


def _key(value: str | None) -> str | None:
    # services/contacts/rules.blocking_key as this revision made it (copied here: a migration
    # must not change when that code does). Keys of contacts written earlier must match the
    # keys of new ones, or an old O'Neil is never compared with a new O’Neil.
    if not value:
        return None
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(
        ch
        for ch in decomposed
        if not (
            unicodedata.combining(ch)
            or unicodedata.category(ch)[0] in "PS"
            or ch in _LETTER_APOSTROPHES
        )
    )
    # At most 100 characters, the size of the shorter key column: folding lengthens a name.
    return unicodedata.normalize("NFC", "".join(bare.split()))[:100] or None


def upgrade() -> None:
    connection = op.get_bind()
    values = [
        {"key": contact_id, "last_name_key": _key(last_name), "company_key": _key(company)}
        for contact_id, last_name, company, last_name_key, company_key in connection.execute(
            sa.select(
                CONTACTS.c.id,
                CONTACTS.c.last_name,
                CONTACTS.c.company,
                CONTACTS.c.last_name_key,
                CONTACTS.c.company_key,
            )
        )
        if (last_name_key, company_key) != (_key(last_name), _key(company))
    ]
    if values:
        connection.execute(
            CONTACTS.update()
            .where(CONTACTS.c.id == sa.bindparam("key"))
            .values(
                last_name_key=sa.bindparam("last_name_key"),
                company_key=sa.bindparam("company_key"),
            ),
            values,
        )


def downgrade() -> None:
    # The keys without punctuation still find every duplicate the earlier keys found.
    pass
