"""duplicate-blocking keys without case, accents or Unicode form (José, JOSE, Jose: one key)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05 10:00:00
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
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


def _key(value: str | None) -> str | None:
    # services/contacts/rules.blocking_key as this revision made it (copied here: a migration
    # must not change when that code does). Keys of contacts written earlier must match the
    # keys of new ones, or an old contact is never compared with its new duplicate.
    if not value:
        return None
    decomposed = unicodedata.normalize("NFKD", value.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", " ".join(bare.split())) or None


def upgrade() -> None:
    connection = op.get_bind()
    values = [
        {"key": contact_id, "last_name_key": _key(last_name), "company_key": _key(company)}
        for contact_id, last_name, company in connection.execute(
            sa.select(CONTACTS.c.id, CONTACTS.c.last_name, CONTACTS.c.company)
        )
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
    # The folded keys still find every duplicate the lower-cased ones found.
    pass
