"""Contacts' data migrations, run on a database holding rows written before them."""

import uuid
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import insert, select

from services.contacts.models import Contact
from services.contacts.rules import blocking_key
from shared.db import create_engine, ensure_schema
from shared.migrations import alembic_config, upgrade_to_head
from shared.testing import isolated_database

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"


async def test_0003_folds_the_blocking_keys_of_existing_contacts(tmp_path: Path) -> None:
    async with isolated_database(tmp_path, "contacts") as settings:
        engine = create_engine(settings["database_url"], settings.get("database_schema"))
        try:
            await ensure_schema(engine, settings.get("database_schema"))
            async with engine.begin() as connection:
                await connection.run_sync(
                    lambda sync: command.upgrade(alembic_config(MIGRATIONS, sync), "0002")
                )
                now = datetime.now(UTC)
                rows = [
                    ("José", "García", "Café Central"),
                    ("Anna", None, None),
                ]
                for first, last, company in rows:
                    await connection.execute(
                        insert(Contact).values(
                            id=uuid.uuid4(),
                            status="active",
                            first_name=first,
                            last_name=last,
                            company=company,
                            preferences={},
                            # As 0002's code made the keys: lower-cased only.
                            last_name_key=last.lower() if last else None,
                            company_key=company.lower() if company else None,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            async with engine.begin() as connection:
                await connection.run_sync(
                    lambda sync: command.upgrade(alembic_config(MIGRATIONS, sync), "0003")
                )
            async with engine.connect() as connection:
                keys = set(
                    (
                        await connection.execute(select(Contact.last_name_key, Contact.company_key))
                    ).all()
                )
            assert keys == {("garcia", "cafe central"), (None, None)}
        finally:
            await engine.dispose()


async def test_0004_leaves_punctuation_and_spaces_out_of_existing_keys(tmp_path: Path) -> None:
    async with isolated_database(tmp_path, "contacts") as settings:
        engine = create_engine(settings["database_url"], settings.get("database_schema"))
        try:
            await ensure_schema(engine, settings.get("database_schema"))
            async with engine.begin() as connection:
                await connection.run_sync(
                    lambda sync: command.upgrade(alembic_config(MIGRATIONS, sync), "0003")
                )
                now = datetime.now(UTC)
                rows = [
                    # As 0003's code made the keys: punctuation and spaces kept.
                    ("Sean", "O\u2019Neil", "o\u2019neil", "Smith & Co.", "smith & co."),
                    ("José", "García", "garcia", None, None),
                    ("Anna", None, None, None, None),
                    # Its key by 0003's code overflowed the column (SQLite kept it anyway).
                    ("Franz", "Strauß" * 16, None, None, None),
                ]
                for first, last, last_key, company, company_key in rows:
                    await connection.execute(
                        insert(Contact).values(
                            id=uuid.uuid4(),
                            status="active",
                            first_name=first,
                            last_name=last,
                            company=company,
                            preferences={},
                            last_name_key=last_key,
                            company_key=company_key,
                            created_at=now,
                            updated_at=now,
                        )
                    )
            await upgrade_to_head(engine, MIGRATIONS)
            async with engine.connect() as connection:
                keys = set(
                    (
                        await connection.execute(select(Contact.last_name_key, Contact.company_key))
                    ).all()
                )
            assert keys == {
                ("oneil", "smithco"),
                ("garcia", None),
                (None, None),
                (("strauss" * 16)[:100], None),
            }
            # The keys a new contact gets: an old O’Neil is compared with a new O'Neil.
            assert (blocking_key("O'Neil"), blocking_key("Smith & Co")) == ("oneil", "smithco")
        finally:
            await engine.dispose()
