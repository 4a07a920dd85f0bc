"""blocking-key indexes with the status: the duplicate blocks are counted from the index alone

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 12:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYS = ("last_name_key", "company_key")


def upgrade() -> None:
    for key in KEYS:
        op.drop_index(f"ix_contacts_{key}", table_name="contacts")
        op.create_index(f"ix_contacts_{key}", "contacts", [key, "status"])


def downgrade() -> None:
    for key in KEYS:
        op.drop_index(f"ix_contacts_{key}", table_name="contacts")
        op.create_index(f"ix_contacts_{key}", "contacts", [key])
