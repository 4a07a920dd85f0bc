"""Bulk import: CSV or NDJSON rows, validated one by one; good rows kept, bad rows reported."""

import csv
import io
import json
import re
import uuid
from collections import Counter
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.contacts import events, rules
from services.contacts.models import Contact, ContactIdentity, ContactStatus
from services.contacts.schemas import ContactFields, ImportResult, ImportRowError
from services.contacts.service import (
    PRIMARY_IDENTITY_FIELDS,
    find_identity_owners,
    new_contact_row,
    refresh_keys,
)
from shared.db import in_lists, lock_customers
from shared.errors import Conflict, InvalidInput
from shared.events import ContactPreferences, utcnow
from shared.outbox import add_rows
from shared.values import NUL_REASON, where_nul

CSV_COLUMNS = frozenset(
    {"first_name", "last_name", "email", "phone", "company", "country", "external_id"}
)
UPDATABLE = ("first_name", "last_name", "company", "country")

# A row of the file: the line it starts on (1-based, blank lines counted, a CSV header is
# line 1), and its values as a dict, or its error where it cannot even be read.
Parsed = tuple[int, dict[str, Any] | ImportRowError]


def parse_rows(body: bytes, content_type: str, max_rows: int) -> list[Parsed]:
    """The file's rows (blank lines are none), each with the line of the file it starts on."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the file must be UTF-8 encoded", field="body") from None
    kind = content_type.split(";")[0].strip().lower()
    if kind in ("text/csv", "application/csv"):
        rows = _csv_rows(text)
    elif kind in ("application/x-ndjson", "application/ndjson", "application/jsonl"):
        rows = _ndjson_rows(text)
    else:
        raise InvalidInput("send text/csv or application/x-ndjson", field="content-type")
    if not rows:
        raise InvalidInput("the file has no data rows", field="body")
    if len(rows) > max_rows:
        raise InvalidInput(f"at most {max_rows} rows per import, got {len(rows)}", field="body")
    return rows


# Excel writes "CSV" with semicolons where a comma is the decimal sign (most of Europe),
# and "Text (tab-delimited)" with tabs.
CSV_DELIMITERS = ",;\t"


def blank_line(line: str) -> bool:
    """Whether a line of a CSV file holds no value, whatever its delimiter: nothing, spaces,
    or delimiters alone (Excel's row of empty cells, ";;;" or ",,," or tabs), their cells
    quoted or not (a row of quoted empty cells, '"";"";""', from some exports)."""
    return all(ch in CSV_DELIMITERS or ch == '"' or ch.isspace() for ch in line)


def header_line(text: str) -> tuple[int, str]:
    """(the number of blank lines before the CSV header, the header line): the first line
    that is not blank. Excel keeps a row of empty cells above the header as ";;;": that row
    was taken for the header, or told the sniffer the delimiter, and the file was refused."""
    skipped = 0
    # newline="": lines end in CRLF, LF or a lone CR, as the csv reader splits them.
    for line in io.StringIO(text, newline=""):
        if not blank_line(line):
            return skipped, line.rstrip("\r\n")
        skipped += 1
    return skipped, ""


def csv_delimiter(header: str) -> str:
    """The delimiter of a CSV file, as the csv module's sniffer reads its header line (the
    column names: cells of the rows below, a company "Smith, Weber & Co" in a file split by
    semicolons say, would mislead it); a comma where it cannot tell (one column).
    Its first 1,000 characters only: the known columns fit in far fewer, and the sniffer's
    regular expressions take time quadratic in the length (7 s for 40 KB of ',",",')."""
    try:
        return csv.Sniffer().sniff(header[:1000], delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _csv_rows(text: str) -> list[Parsed]:
    skipped, header = header_line(text)
    # newline="": lines may end in CRLF, LF or a lone CR (Excel for Mac), as the csv module
    # expects its file to be opened. Only the delimiter is taken from the sniffer; quoting
    # stays the csv module's default.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=csv_delimiter(header))
    try:
        # A blank line holds no quote, so the reader reads each as one row: passed over
        # through the reader, they count in the lines it tells the rows are on.
        for _ in range(skipped):
            next(reader)
        return _read_csv(reader)
    except csv.Error as exc:  # past this, the reader cannot tell where the rows are
        raise InvalidInput(
            f"the CSV cannot be read at line {reader.line_num}: {exc}", field="body"
        ) from None


def _read_csv(reader: "csv._reader") -> list[Parsed]:
    # The header's line, after the blank ones: a file of blank lines alone has none.
    header = [name.strip() for name in next(reader, [])]
    unknown = sorted(set(header) - CSV_COLUMNS)
    if unknown:
        raise InvalidInput(
            f"unknown columns {unknown}; allowed: {sorted(CSV_COLUMNS)}", field="header"
        )
    repeated = sorted(name for name, count in Counter(header).items() if count > 1)
    if repeated:
        # Only one of them would be read: the other's values would be dropped unseen.
        raise InvalidInput(f"columns named more than once: {repeated}", field="header")
    rows: list[Parsed] = []
    while True:
        # A row starts on the line after the one the row before it ended on: blank lines
        # and cells over several lines are counted as the file's reader sees them.
        line = reader.line_num + 1
        cells = next(reader, None)
        if cells is None:
            return rows
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or one of delimiters alone (Excel's row of empty cells)
        if len(cells) > len(header):
            error = ImportRowError(
                row=len(rows) + 1, line=line, field="row", reason="more cells than columns"
            )
            rows.append((line, error))
            continue
        # Fewer cells than columns: the others are empty.
        values = {k: v.strip() for k, v in zip(header, cells, strict=False) if v.strip() != ""}
        rows.append((line, values))


def _ndjson_rows(text: str) -> list[Parsed]:
    rows: list[Parsed] = []
    # Lines end in LF, CRLF or a lone CR, none of which a JSON text holds unescaped; not at
    # str.splitlines()'s other breaks (U+2028, U+2029, U+0085...), which a JSON string may.
    for number, line in enumerate(re.split(r"\r\n?|\n", text), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            reason = f"malformed JSON: {exc}"
        else:
            if isinstance(value, dict):
                rows.append((number, value))
                continue
            reason = "each line must be a JSON object"
        error = ImportRowError(row=len(rows) + 1, line=number, field="row", reason=reason)
        rows.append((number, error))
    return rows


async def import_contacts(session: AsyncSession, rows: list[Parsed]) -> ImportResult:
    """Create new contacts, update those matched by ``external_id``; every row reported."""
    errors: list[ImportRowError] = []
    ids: list[uuid.UUID | None] = [None] * len(rows)
    lines = [line for line, _ in rows]
    valid: dict[int, ContactFields] = {}
    for index, (line, row) in enumerate(rows):
        if isinstance(row, ImportRowError):
            errors.append(row)
            continue
        if (field := where_nul(row)) is not None:
            errors.append(ImportRowError(row=index + 1, line=line, field=field, reason=NUL_REASON))
            continue
        try:
            valid[index] = ContactFields.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            errors.append(
                ImportRowError(
                    row=index + 1,
                    line=line,
                    field=".".join(str(p) for p in first["loc"]) or "row",
                    # The validator's message alone, as the API's 422 gives it.
                    reason=first["msg"].removeprefix("Value error, "),
                )
            )

    by_external = await _contacts_by_external_id(
        session, [c.external_id for c in valid.values() if c.external_id]
    )
    owners = await find_identity_owners(
        session,
        list(
            {
                (f, v)
                for c in valid.values()
                for f in PRIMARY_IDENTITY_FIELDS
                if (v := getattr(c, f))
            }
        ),
    )
    claimed: dict[tuple[str, str], int] = {}  # identity -> first row in this file that uses it
    seen_external: set[str] = set()
    new_rows: list[dict[str, Any]] = []
    updated = unchanged = 0
    now = utcnow()
    for index, data in valid.items():
        row_no = index + 1
        if data.external_id and data.external_id in seen_external:
            errors.append(
                ImportRowError(
                    row=row_no,
                    line=lines[index],
                    field="external_id",
                    reason="repeated in this file",
                )
            )
            continue
        existing = by_external.get(data.external_id) if data.external_id else None
        problem = _identity_problem(data, row_no, lines, existing, owners, claimed)
        if problem:
            errors.append(problem)
            continue
        if data.external_id:
            seen_external.add(data.external_id)
        for f in PRIMARY_IDENTITY_FIELDS:
            if value := getattr(data, f):
                claimed[(f, value)] = row_no
        if existing is None:
            row = new_contact_row(data, now)
            new_rows.append(row)
            ids[index] = row["id"]
        else:
            if _apply_update(existing, data, now):
                events.contact_updated(session, existing)
                updated += 1
            else:
                unchanged += 1
            ids[index] = existing.id
    await session.flush()
    try:
        await _insert_new(session, new_rows)
    except IntegrityError as exc:  # the identities were free when checked, above
        raise Conflict(
            "another request has just created a contact with an e-mail, phone or external_id "
            "of this file; nothing was imported: send the file again",
            field="body",
        ) from exc
    errors.sort(key=lambda e: e.row)
    return ImportResult(
        received=len(rows),
        created=len(new_rows),
        updated=updated,
        unchanged=unchanged,
        failed=len(errors),
        errors=errors,
        ids=ids,
    )


async def _insert_new(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """New contacts, their identities and their events, one multi-row INSERT each."""
    if not rows:
        return
    await session.execute(insert(Contact), rows)
    identities = [
        {"contact_id": row["id"], "kind": f, "value": row[f]}
        for row in rows
        for f in PRIMARY_IDENTITY_FIELDS
        if row[f]
    ]
    if identities:
        await session.execute(insert(ContactIdentity), identities)
    await add_rows(session, [events.created_row(row) for row in rows])


def _identity_problem(
    data: ContactFields,
    row_no: int,
    lines: list[int],
    existing: Contact | None,
    owners: dict[tuple[str, str], uuid.UUID],
    claimed: dict[tuple[str, str], int],
) -> ImportRowError | None:
    for f in PRIMARY_IDENTITY_FIELDS:
        value = getattr(data, f)
        if not value:
            continue
        owner = owners.get((f, value))
        if owner is not None and (existing is None or owner != existing.id):
            return ImportRowError(
                row=row_no,
                line=lines[row_no - 1],
                field=f,
                reason="belongs to another contact",
                existing_id=owner,
            )
        if (f, value) in claimed:
            first = claimed[(f, value)]
            return ImportRowError(
                row=row_no,
                line=lines[row_no - 1],
                field=f,
                reason=f"also used by row {first} (line {lines[first - 1]})",
            )
    return None


async def _contacts_by_external_id(
    session: AsyncSession, external_ids: list[str]
) -> dict[str, Contact]:
    """The active contacts the rows' external ids name (a merged record's id leads to its
    survivor), locked as the API's changes lock a contact and read after the lock: a change
    committed meanwhile is then in the import's snapshot, which is the contact's latest
    state on the compacted topic (read before, the snapshot undid that change everywhere)."""
    target: dict[str, uuid.UUID] = {}
    for chunk in in_lists(external_ids):
        rows = await session.execute(
            select(Contact.external_id, Contact.id, Contact.status, Contact.merged_into).where(
                Contact.external_id.in_(chunk)
            )
        )
        for external_id, contact_id, status, merged_into in rows:
            merged = status == ContactStatus.merged and merged_into is not None
            target[external_id] = merged_into if merged else contact_id
    ids = sorted(set(target.values()))
    await lock_customers(session, ids)
    contacts: dict[uuid.UUID, Contact] = {}
    for chunk in in_lists(ids):
        query = select(Contact).where(Contact.id.in_(chunk))
        for contact in await session.scalars(query.execution_options(populate_existing=True)):
            contacts[contact.id] = contact
    return {
        external_id: contact
        for external_id, contact_id in target.items()
        if (contact := contacts.get(contact_id)) is not None
        and contact.status == ContactStatus.active
    }


def _apply_update(contact: Contact, data: ContactFields, now: Any) -> bool:
    """Copy the row's non-empty fields; True if anything changed."""
    changed = False
    for f in UPDATABLE:
        value = getattr(data, f)
        if value is not None and value != getattr(contact, f):
            setattr(contact, f, value)
            changed = True
    for f in PRIMARY_IDENTITY_FIELDS:
        value = getattr(data, f)
        if value is not None and value != getattr(contact, f):
            old = getattr(contact, f)
            contact.identities[:] = [
                i for i in contact.identities if not (i.kind == f and i.value == old)
            ]
            # It may be one of the contact's further identities already: it stays that row.
            if not any(i.kind == f and i.value == value for i in contact.identities):
                contact.identities.append(ContactIdentity(kind=f, value=value))
            setattr(contact, f, value)
            changed = True
    if data.preferences is not None:
        # As the row's other fields: the preferences it holds change, the others are kept.
        stored = ContactPreferences.model_validate(contact.preferences or {})
        sent = data.preferences.model_dump(exclude_unset=True)
        prefs = rules.patched_preferences(stored, sent).model_dump(mode="json")
        if prefs != stored.model_dump(mode="json"):
            contact.preferences = prefs
            changed = True
    if changed:
        refresh_keys(contact)
        contact.updated_at = now
    return changed
