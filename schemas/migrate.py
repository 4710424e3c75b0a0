"""Upgrade rows written with older schema versions to the current one."""

from __future__ import annotations

from typing import Any

from schemas.sample import SCHEMA_VERSION


class SchemaVersionError(ValueError):
    """A row was written by a newer mifg than this one."""


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """Return `row` upgraded to SCHEMA_VERSION; raise if it is from the future."""
    version = int(row.get("schema_version") or 1)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"row {row.get('id', '?')} has schema_version {version}; this mifg reads <= {SCHEMA_VERSION}"
        )
    # Version 1 is the first; later versions add steps here, e.g. `if version == 1: ...; version = 2`.
    row["schema_version"] = SCHEMA_VERSION
    return row
